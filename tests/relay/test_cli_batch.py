"""`relay batch submit --wait`, `status` and `retry`: through the relay's own API, with a progress line. The
first runs as the command does (`python -m app.cli`); the others run in this process (the same click
commands, over real HTTP), which spares a Python start each."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

from click.testing import CliRunner, Result

from app.cli.batch import batch
from tests.support.servers import eventually

TIMEOUT = 120


def cli(relay, *args: str) -> Result:
    return CliRunner().invoke(batch, [*args, "--url", relay.url, "--api-key", relay.api_key])


def test_a_csv_batch_with_progress_then_its_status_and_a_retry(relay, tmp_path):
    rows = tmp_path / "renewals.csv"  # rows 1 and 3 stay running until the test has seen them so
    rows.write_text(
        "record_key,company,note\ndeal:1,Acme,[[hold=cli]]\ndeal:2,Globex,[[fail]]\n"
        "deal:3,Initech,[[hold=cli]]\n"
    )
    argv = [
        sys.executable,
        "-m",
        "app.cli",
        "batch",
        "submit",
        str(rows),
        "--format",
        "word",
        "--template",
        "Renewal memo for {{company}} {{note}}",
        "--wait",
    ]
    env = {**relay.env(), "RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    follow = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []

    def read() -> None:
        for line in follow.stderr:  # type: ignore[union-attr]
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        eventually(
            lambda: any(re.search(r"[1-9] running", line) for line in lines),
            TIMEOUT,
            "a progress line with rows running",
            every=0.1,
            show=lambda: lines,
        )
        relay.sandbox.release("cli")
        follow.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"`relay batch submit --wait` did not end in {TIMEOUT} s; stderr: {lines}"
        ) from None
    finally:
        if follow.poll() is None:
            follow.kill()
    reader.join(TIMEOUT)
    out = follow.stdout.read()  # type: ignore[union-attr]
    assert follow.returncode == 1, f"a row failed: a script learns it from the exit code: {lines}"
    assert "1 failed, 0 cancelled" in lines[-1], lines
    batch_id = out.split()[1]
    bars = [line for line in lines if line.startswith("[")]
    assert len(bars) >= 2 and "2 done, 1 failed, 0 running" in bars[-1] and "100.0%" in bars[-1], (
        bars
    )
    status = cli(relay, "status", batch_id)
    assert status.exit_code == 0 and "failed   row 2 deal:2:" in status.stdout, status.output
    again = cli(relay, "retry", batch_id, "--wait")
    assert again.exit_code == 1 and "1 failed rows again" in again.stdout, (
        "the row failed again",
        again.output,
    )


def test_a_bad_batch_lists_the_rows_and_fields_at_fault(make_relay, tmp_path):
    relay = make_relay(worker=False)  # refused before anything runs
    rows = tmp_path / "bad.csv"
    rows.write_text("record_key,company\ndeal:1,Acme\ndeal:2,Globex\n")
    done = cli(
        relay,
        "submit",
        str(rows),
        "--format",
        "word",
        "--template",
        "Memo for {{company}} in {{city}}",
    )
    assert done.exit_code != 0
    assert (
        "row 1, line 2 of the file, city: the template names {{city}}" in done.stderr
        and "row 2 (line 3), city" in done.stderr
    )
    rows.write_text("record_key,company\ndeal:1,Acme\n,Globex\n")
    blank = cli(
        relay, "submit", str(rows), "--format", "word", "--template", "Memo for {{company}}"
    )
    assert blank.exit_code != 0 and "row 2 (line 3), record_key:" in blank.stderr, blank.stderr
