"""Workers SIGKILLed while 200 deliveries run to five kinds of destination: nothing is lost; Drive, folder and
webhook subscribers get no duplicate; Slack and email (which cannot tell) duplicate at most once per kill.
(Warm shutdowns: test_warm_shutdown.py.)

The kills follow the deliveries' progress (one each ninth of the documents), each hits a worker running
deliveries when one is, and the last documents wait in the API until every kill is made: the same kills
happen however fast the machine is."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.relay.test_email_delivery import email_destination
from tests.support.chaos import WorkerKiller, lane_holders, where_is
from tests.support.servers import eventually

TASKS = 40  # x 5 destinations = 200 deliveries
HELD = 6  # the last documents, kept running in the API until the kills are made
KILLS = 8


@pytest.mark.long
def test_sigkill_workers_while_200_deliveries_run(
    make_relay, make_sandbox, fake_drive, fake_slack, smtp_server, receiver, tmp_path, reliability
):
    sandbox = make_sandbox(pool_size=HELD + 4)  # the held documents leave room for the others
    fake_slack.add_channel("C0CHAOS")  # the bot was invited
    relay = make_relay(
        sandbox=sandbox,
        worker=False,
        drive_api_url=fake_drive.url,
        drive_token_url=fake_drive.url + "/token",
        slack_api_url=fake_slack.url + "/api/",
        delivery_max_attempts=12,
        delivery_recheck_seconds=3,
    )
    relay.start_scheduler()  # its reconciler queues again a retry job a killed worker had popped
    client = relay.client()
    client.post(
        "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
    ).raise_for_status()
    destinations = [
        {"kind": "folder", "config": {"path": "chaos"}},
        {
            "kind": "gdrive",
            "config": {"folder_id": "folder-reports", "credentials": fake_drive.service_account},
        },
        {"kind": "slack", "config": {"channel": "C0CHAOS", "bot_token": "xoxb-test-token"}},
        email_destination(smtp_server),
    ]
    workers = [relay.start_worker() for _ in range(3)]
    steps = [(TASKS - HELD) * k // (KILLS + 1) for k in range(1, KILLS + 1)]  # hook deliveries made
    chaos = WorkerKiller(
        relay,
        workers,
        steps,
        lambda: len(receiver.requests),
        seed=7,
        busy=lambda: lane_holders(relay),
    ).start_killing()
    try:
        tasks = [
            relay.submit(
                client,
                prompt=f"Chaos report {n}" + (" [[hold=tail]]" if n >= TASKS - HELD else ""),
                record_key=f"chaos:{n}",
                destinations=destinations,
            )
            for n in range(TASKS)
        ]
        kills = chaos.wait_for_kills()
    finally:
        chaos.finish()
        sandbox.release("tail")

    task_ids = [t["task_id"] for t in tasks]

    def unsettled() -> list[dict]:
        return [d for d in relay.deliveries_of(task_ids) if d["state"] not in ("delivered", "dead")]

    def all_settled():
        states = Counter(d["state"] for d in relay.deliveries_of(task_ids))
        return (
            states
            if sum(states.values()) == TASKS * 5 and set(states) <= {"delivered", "dead"}
            else None
        )

    def unplanned() -> list[tuple[str, str]]:
        return [
            (t.task_id, t.status) for t in relay.ctx.tasks.many(task_ids) if len(t.delivery_ids) < 5
        ]

    states = eventually(
        all_settled,
        600,
        f"all {TASKS * 5} deliveries to settle",
        every=1,
        show=lambda: (
            f"not settled: {[where_is(relay, d['delivery_id']) for d in unsettled()[:5]]}; "
            f"tasks without their 5: {unplanned()[:10]}"
        ),
    )
    assert [kill.step for kill in kills] == steps, "a kill at each ninth of the documents"
    assert states == {"delivered": TASKS * 5}, (
        f"dead: {[d for d in relay.deliveries_of(task_ids) if d['state'] == 'dead'][:10]}"
    )

    folder_files = list((tmp_path / "deliveries" / relay.tenant_id / "chaos").iterdir())
    drive_files = Counter(f["appProperties"]["relayDeliveryId"] for f in fake_drive.files.values())
    hook_ids = Counter(r.headers["Webhook-Id"] for r in receiver.requests)
    slack_files = len(fake_slack.shared_files("C0CHAOS"))
    emails = Counter(m["Message-ID"] for m in smtp_server.mailbox.messages)
    assert len(folder_files) == TASKS
    assert len(drive_files) == TASKS and max(drive_files.values()) == 1, (
        f"Drive files made twice: {[i for i, n in drive_files.items() if n > 1]}"
    )
    assert len(hook_ids) == TASKS  # every event once per webhook-id (a repeat carries the same id)
    assert TASKS <= slack_files <= TASKS + len(kills)
    assert len(emails) == TASKS and sum(emails.values()) <= TASKS + len(kills), (
        f"emails sent more than once: {[i for i, n in emails.items() if n > 1]}"
    )
    busy = sum(kill.busy for kill in kills)
    reliability(
        fault=f"SIGKILL a worker (of 3) {KILLS} times, one each ninth of {TASKS * 5} deliveries",
        tried=len(kills),
        lost=0,
        duplicated=f"Drive 0, folder 0, webhook 0 (raw repeats with the same webhook-id: "
        f"{sum(hook_ids.values()) - TASKS}), Slack {slack_files - TASKS}, "
        f"email {sum(emails.values()) - TASKS}",
        notes=f"{busy} of {len(kills)} kills hit a worker running deliveries; Slack and email cannot be "
        "asked whether a message already went out; the deliveries a killed worker was running are "
        "claimed from the delivery lane by another after a lease",
    )
