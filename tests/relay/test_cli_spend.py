"""`relay usage` and `relay budgets`, through the relay's own API."""

from __future__ import annotations

import csv
import io
import subprocess
import sys


def cli(relay, *args: str) -> subprocess.CompletedProcess:
    env = {**relay.env(), "RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_usage_and_budgets_on_the_command_line(relay):
    with relay.client() as client:
        for key in ("deal:1", "deal:2"):
            relay.wait_task(client, relay.submit(client, prompt="Memo", record_key=key)["task_id"])
    table = cli(relay, "usage", "--group-by", "record")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["record", "credits", "tasks", "agent", "time"]
    assert {line.split()[0] for line in lines[1:3]} == {"deal:1", "deal:2"} and lines[3].split()[:3] == ["total",
                                                                                                         "80", "2"]
    as_csv = list(csv.DictReader(io.StringIO(cli(relay, "usage", "--group-by", "format", "--csv").stdout)))
    assert [(row["format"], row["credits_used"], row["task_count"]) for row in as_csv] == [("excel", "80", "2")]

    set_it = cli(relay, "budgets", "set", "100", "--hard-cap", "--alert-at", "50,100")
    assert set_it.returncode == 0 and set_it.stdout.startswith("tenant: 80 of 100 credits [################    ] 80%")
    record = cli(relay, "budgets", "set", "10", "--record", "deal:1")
    assert record.returncode == 0 and "record deal:1: 40 of 10 credits" in record.stdout
    listed = cli(relay, "budgets", "list").stdout.splitlines()
    assert [line.split(":")[0] for line in listed] == ["tenant", "record deal"]
    assert cli(relay, "budgets", "delete", "--record", "deal:1").returncode == 0
    missing = cli(relay, "budgets", "delete", "--record", "deal:1")
    assert missing.returncode != 0 and "No budget here" in missing.stderr
    bad = cli(relay, "budgets", "set", "100", "--alert-at", "lots")
    assert bad.returncode != 0 and "--alert-at" in bad.stderr
