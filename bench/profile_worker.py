"""bench/profile_worker: where a worker's time goes at 200 webhooks/s (bench/scale's end-to-end run
with 2 workers), sampled by py-spy across the relay's processes.

    pip install py-spy   # not a dependency of the relay; sampling other processes needs ptrace (root)
    python bench/profile_worker.py [--raw profile.txt] [--top 25]

Prints the worker processes' busy samples (start-up imports left out) by the frame that was running
and by the relay's own functions that were on the stack.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDLE = ("wait (threading", "select (", "_wait_for_tstate_lock", "poll (", "acquire", "sleep")


def record(raw: Path) -> None:
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    scale = [sys.executable, str(ROOT / "bench/scale.py"), "--only-e2e", "--rates", "200"]
    scale += ["--workers", "2"]
    command = [spy, "record", "--subprocesses", "--nonblocking", "--rate", "200"]
    subprocess.run([*command, "--format", "raw", "-o", str(raw), "--", *scale], check=True)


def summary(raw: Path, top: int) -> None:
    own, stacked, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        if not processes or "app.cli worker" not in processes[-1]:
            continue
        frames = [re.sub(r":\d+\)", ")", f) for f in frames if not f.startswith("process ")]
        if (
            not frames
            or any(k in frames[-1] for k in IDLE)
            or any("importlib" in f for f in frames)
        ):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if frame.split(" (")[-1].startswith(("app/", "connectors/")):
                stacked[frame] += int(count)
    print(f"worker busy samples: {total}")
    for title, counter in (("running", own), ("on the stack (the relay's)", stacked)):
        print(f"\n{title}:")
        for frame, count in counter.most_common(top):
            print(f"  {100 * count / max(total, 1):5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, help="py-spy's raw output: summarise it, no new run")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    raw = args.raw
    if raw is None:
        raw = Path(tempfile.mkdtemp(prefix="relay-profile-")) / "profile.txt"
        record(raw)
    summary(raw, args.top)


if __name__ == "__main__":
    main()
