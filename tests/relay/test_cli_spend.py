"""`relay usage` and `relay budgets`, through the relay's own API."""

from __future__ import annotations

import csv
import io

from click.testing import CliRunner, Result

from app.cli.commands import relay as main
from app.work.intake import IntakeLane
from tests.support.servers import eventually


def cli(relay, *args: str) -> Result:
    """`relay ARGS` in this process: these commands only speak to the relay's API (RELAY_URL, RELAY_API_KEY), and
    a process of their own would cost a second or two of CPU each to start."""
    return CliRunner().invoke(
        main, list(args), env={"RELAY_URL": relay.url, "RELAY_API_KEY": relay.api_key}
    )


def test_usage_and_budgets_on_the_command_line(make_relay):
    # the tasks' webhooks are applied here: no worker process needed
    relay = make_relay(worker=False)
    with relay.client() as client:
        for key in ("deal:1", "deal:2"):
            task_id = relay.submit(client, prompt="Memo", record_key=key)["task_id"]
            eventually(
                lambda: IntakeLane(relay.ctx).drain(), 60, "the API's webhook in the intake stream"
            )
            relay.wait_task(client, task_id)
    table = cli(relay, "usage", "--group-by", "record")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["record", "credits", "tasks", "agent", "time"]
    assert {line.split()[0] for line in lines[1:3]} == {"deal:1", "deal:2"} and lines[3].split()[
        :3
    ] == ["total", "80", "2"]
    as_csv = list(
        csv.DictReader(io.StringIO(cli(relay, "usage", "--group-by", "format", "--csv").stdout))
    )
    assert [(row["format"], row["credits_used"], row["task_count"]) for row in as_csv] == [
        ("excel", "80", "2")
    ]

    set_it = cli(relay, "budgets", "set", "100", "--hard-cap", "--alert-at", "50,100")
    assert set_it.exit_code == 0 and set_it.stdout.startswith(
        "tenant: 80 of 100 credits [################    ] 80%"
    )
    record = cli(relay, "budgets", "set", "10", "--record", "deal:1")
    assert record.exit_code == 0 and "record deal:1: 40 of 10 credits" in record.stdout
    listed = cli(relay, "budgets", "list").stdout.splitlines()
    assert [line.split(":")[0] for line in listed] == ["tenant", "record deal"]
    assert cli(relay, "budgets", "delete", "--record", "deal:1").exit_code == 0
    missing = cli(relay, "budgets", "delete", "--record", "deal:1")
    assert missing.exit_code != 0 and "No budget here" in missing.stderr
    bad = cli(relay, "budgets", "set", "100", "--alert-at", "lots")
    assert bad.exit_code != 0 and "--alert-at" in bad.stderr
