"""bench/against: one bench script run at another commit and then here, in one run on one machine, and the
figures of the two side by side with their ratio (here / there).

The other commit is checked out into a temporary git worktree and its own copy of the script runs there
(with this venv: the packages are the same), so each side measures its own code. The runs take turns
(there, here, there, here, ...) so that a machine getting busier mid-run weighs on both alike.

    python bench/against.py 61bb24b scale.py --only-e2e --rates 200 --workers 2 --seconds 8
    python bench/against.py 61bb24b slack.py --turns 2 --rounds 2

Figures compared: bench/scale's "relay (web, workers, Redis)" CPU ms per webhook and its p50/p99 at each
rate and worker count; bench/slack's p99 of /slack/commands (worst round), of the bare route (best round),
and their ratio. Of several turns, each side's lowest figure is compared.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_E2E = re.compile(
    r"e2e workers=(\d+) rate=(\d+)/s p50=(\d+) ms p99=(\d+) ms\n"
    r".*relay \(web, workers, Redis\) ([\d.]+)"
)
_SLACK = re.compile(
    r"p99 of /slack/commands: [\d.]+-([\d.]+) ms.*baseline ([\d.]+)-[\d.]+ ms; worst ratio ([\d.]+)"
)


def _scale_figures(output: str) -> dict[str, float]:
    found = {}
    for workers, rate, p50, p99, cpu in _E2E.findall(output):
        at = f"{workers} workers, {rate}/s"
        found |= {
            f"relay CPU ms per webhook ({at})": float(cpu),
            f"p50 ms ({at})": float(p50),
            f"p99 ms ({at})": float(p99),
        }
    return found


def _slack_figures(output: str) -> dict[str, float]:
    found = {}
    for command, baseline, ratio in _SLACK.findall(output):
        found |= {
            "/slack/commands p99 ms, worst round": float(command),
            "bare route p99 ms, best round": float(baseline),
            "ratio of the two": float(ratio),
        }
    return found


_FIGURES = {"scale.py": _scale_figures, "slack.py": _slack_figures}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ref", help="the commit to measure against (e.g. the one before a change)")
    parser.add_argument("script", choices=sorted(_FIGURES), help="the bench script, in bench/")
    parser.add_argument("--turns", type=int, default=1, help="runs of each side, taking turns")
    args, script_args = parser.parse_known_args()

    with tempfile.TemporaryDirectory(prefix="relay-against-") as scratch:
        there = Path(scratch) / "there"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(there), args.ref],
            check=True,
            capture_output=True,
        )
        try:
            figures: dict[str, list[dict]] = {"there": [], "here": []}
            for turn in range(1, args.turns + 1):
                for side, root in (("there", there), ("here", ROOT)):
                    print(f"-- turn {turn}, {side} ({_describe(root)})", flush=True)
                    output = _run(root, args.script, script_args)
                    figures[side].append(_figures(args.script, output))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(there)],
                check=False,
                capture_output=True,
            )
    _report(args.ref, figures)


def _run(root: Path, script: str, script_args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(root / "bench" / script), *script_args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{script} failed in {root} (exit {done.returncode})")
    return done.stdout


def _describe(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _figures(script: str, output: str) -> dict[str, float]:
    return _FIGURES[script](output)


def _report(ref: str, figures: dict[str, list[dict]]) -> None:
    print(f"\nhere against {ref}: the best turn of each side (lowest), and here / there")
    labels = [label for label in figures["there"][0] if label in figures["here"][0]]
    for label in labels:
        there = min(turn[label] for turn in figures["there"] if label in turn)
        here = min(turn[label] for turn in figures["here"] if label in turn)
        ratio = here / there if there else float("nan")
        print(f"  {label:<58} there {there:>8.2f}  here {here:>8.2f}  ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
