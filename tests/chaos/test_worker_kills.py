"""Workers SIGKILLed at random while 300 deliveries run to five kinds of destination: nothing is lost;
Drive, folder and webhook subscribers get no duplicate; Slack and email (which cannot tell) duplicate at
most once per kill. (Warm shutdowns: test_warm_shutdown.py.)"""

from __future__ import annotations

from collections import Counter

from tests.relay.test_email_delivery import email_destination
from tests.support.chaos import WorkerKiller
from tests.support.servers import eventually

TASKS = 60  # x 5 destinations = 300 deliveries
KILLS = 8


def test_sigkill_workers_while_300_deliveries_run(make_relay, fake_drive, fake_slack, smtp_server, receiver,
                                                   tmp_path, reliability):
    relay = make_relay(worker=False, drive_api_url=fake_drive.url, drive_token_url=fake_drive.url + "/token",
                       slack_api_url=fake_slack.url + "/api/", delivery_max_attempts=12, delivery_recheck_seconds=3)
    relay.start_scheduler()  # its reconciler queues again a retry job a killed worker had popped
    client = relay.client()
    client.post("/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}).raise_for_status()
    destinations = [{"kind": "folder", "config": {"path": "chaos"}},
                    {"kind": "gdrive", "config": {"folder_id": "folder-reports",
                                                  "credentials": fake_drive.service_account}},
                    {"kind": "slack", "config": {"channel": "C0CHAOS", "bot_token": "xoxb-test-token"}},
                    email_destination(smtp_server)]
    workers = [relay.start_worker() for _ in range(3)]
    chaos = WorkerKiller(relay, workers, KILLS, pause=(0.1, 0.3), seed=7)

    chaos.start()  # before the submits: with 4 test processes the deliveries could all be done before a kill
    tasks = [relay.submit(client, prompt=f"Chaos report {n}", record_key=f"chaos:{n}", destinations=destinations)
             for n in range(TASKS)]

    def all_settled():
        views = [client.get(f"/v1/tasks/{t['task_id']}").json() for t in tasks]
        states = Counter(d["state"] for view in views for d in view["deliveries"])
        return states if sum(states.values()) == TASKS * 5 and set(states) <= {"delivered", "dead"} else None

    try:
        states = eventually(all_settled, 240, "all 300 deliveries to settle", every=0.5)  # a request per task
    finally:
        kills = chaos.finish()
    assert len(kills) >= 4, "the chaos thread barely ran"
    assert states == {"delivered": TASKS * 5}, states

    folder_files = list((tmp_path / "deliveries" / "chaos").iterdir())
    drive_files = Counter(f["appProperties"]["relayDeliveryId"] for f in fake_drive.files.values())
    hook_ids = Counter(r.headers["Webhook-Id"] for r in receiver.requests)
    slack_files = len(fake_slack.shared_files("C0CHAOS"))
    emails = Counter(m["Message-ID"] for m in smtp_server.mailbox.messages)
    assert len(folder_files) == TASKS
    assert len(drive_files) == TASKS and max(drive_files.values()) == 1
    assert len(hook_ids) == TASKS  # every event once per webhook-id (a repeat carries the same id)
    assert TASKS <= slack_files <= TASKS + len(kills)
    assert len(emails) == TASKS and sum(emails.values()) <= TASKS + len(kills)
    reliability(fault=f"SIGKILL a random worker (of 3) every 0.1-0.3 s during {TASKS * 5} deliveries",
                tried=len(kills), lost=0,
                duplicated=f"Drive 0, folder 0, webhook 0 (raw repeats with the same webhook-id: "
                           f"{sum(hook_ids.values()) - TASKS}), Slack {slack_files - TASKS}, "
                           f"email {sum(emails.values()) - TASKS}",
                notes="Slack and email cannot be asked whether a message already went out; the deliveries a "
                      "killed worker was running are claimed from the delivery lane by another after a lease")
