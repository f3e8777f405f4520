"""`relay batch submit --wait`, `status` and `retry`: through the relay's own API, with a progress line."""

from __future__ import annotations

import re
import subprocess
import sys


def cli(relay, *args: str) -> subprocess.CompletedProcess:
    env = {**relay.env(), "RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    return subprocess.run([sys.executable, "-m", "app.cli", "batch", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_csv_batch_with_progress_then_its_status_and_a_retry(relay, tmp_path):
    rows = tmp_path / "renewals.csv"
    rows.write_text("record_key,company,note\ndeal:1,Acme,[[duration=1]]\ndeal:2,Globex,[[fail]]\n"
                    "deal:3,Initech,[[duration=1]]\n")
    done = cli(relay, "submit", str(rows), "--format", "word", "--template", "Renewal memo for {{company}} {{note}}",
               "--wait")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.split()[1]
    bars = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert len(bars) >= 2 and "2 done, 1 failed, 0 running" in bars[-1] and "100.0%" in bars[-1]
    assert any(re.search(r"[1-9] running", bar) for bar in bars), f"progress while rows ran: {bars}"
    status = cli(relay, "status", batch_id)
    assert status.returncode == 0 and "failed   row 2 deal:2:" in status.stdout
    again = cli(relay, "retry", batch_id, "--wait")
    assert again.returncode == 0 and "1 failed rows again" in again.stdout


def test_a_bad_batch_lists_the_rows_and_fields_at_fault(relay, tmp_path):
    rows = tmp_path / "bad.csv"
    rows.write_text("record_key,company\ndeal:1,Acme\ndeal:2,Globex\n")
    done = cli(relay, "submit", str(rows), "--format", "word", "--template", "Memo for {{company}} in {{city}}")
    assert done.returncode != 0
    assert "row 1, city: the template names {{city}}" in done.stderr and "row 2, city" in done.stderr
    rows.write_text("record_key,company\ndeal:1,Acme\n,Globex\n")
    blank = cli(relay, "submit", str(rows), "--format", "word", "--template", "Memo for {{company}}")
    assert blank.returncode != 0 and "rows.1.record_key" in blank.stderr
