"""`relay submit --wait`: through the relay's own API, with a live progress bar."""

from __future__ import annotations

import subprocess
import sys


def test_submit_wait_shows_progress_then_where_the_file_went(relay):
    env = {**relay.env(), "RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    done = subprocess.run([sys.executable, "-m", "app.cli", "submit", "--format", "excel", "--wait", "--record-key",
                           "deal:cli", "Quarterly sales [[duration=4]]"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith("[")]
    percents = [int(line.split("]")[1].split("%")[0]) for line in bars]
    assert percents == sorted(percents) and percents[-1] == 100
    running = ("loading_doc", "restoring_state", "agent_turn", "executing_plan", "saving_doc", "uploading_result",
               "dispatching_webhook")
    assert any(phase in line for line in bars[1:-1] for phase in running), "live progress, not only the end"
    assert "completed" in done.stdout and "download http://127.0.0.1" in done.stdout


def test_submit_without_a_key_or_with_bad_input_explains(relay):
    env = {**relay.env(), "RELAY_URL": relay.url, "RELAY_API_KEY": ""}
    no_key = subprocess.run([sys.executable, "-m", "app.cli", "submit", "x"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert no_key.returncode != 0 and "RELAY_API_KEY" in no_key.stderr
    env["RELAY_API_KEY"] = relay.api_key
    too_long = subprocess.run([sys.executable, "-m", "app.cli", "submit", "x" * 20_001], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    assert too_long.returncode != 0 and "prompt" in too_long.stderr
