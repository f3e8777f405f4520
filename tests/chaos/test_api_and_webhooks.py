"""The API unreachable while documents are submitted, until each has failed several hand-overs: all of them
complete once it is back.
Every upstream webhook sent five times at once, to a relay with two web processes: each event fans out
once (one hook delivery, one event, usage counted once)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.cli.devstack import free_port, stop_processes, wait_until_up
from sandbox import SandboxConfig, create_app
from tests.sandbox_fixtures import ADMIN, SandboxHandle
from tests.support.servers import ServedApp, eventually

FAILED_HANDOVERS = 3  # the outage lasts until each submission has failed this many hand-overs
_prefixes = itertools.count()


@pytest.mark.long
def test_submissions_complete_after_an_api_outage(make_relay, redis_url, tmp_path, reliability):
    config = SandboxConfig(
        redis_url=redis_url,
        key_prefix=f"sbxchaos{next(_prefixes)}:",
        data_dir=tmp_path / "sbx",
        task_seconds=0.05,
        admin_token=ADMIN,
        sweep_interval_seconds=0.1,
        webhook_retry_schedule=(0.2, 0.4, 0.8),
    )
    app = create_app(config)
    port = free_port()
    served = ServedApp(app, port=port).start()
    org = app.extensions["sandbox"].store.create_org("acme")
    api = SandboxHandle(served.url, app, org["api_key"], org["webhook_secret"], org["org_id"])
    try:
        relay = make_relay(sandbox=api, submit_retry_intervals=(1,) * 90)
        client = relay.client()
        served.stop()  # the API goes away
        went = time.monotonic()
        tasks = [
            relay.submit(client, prompt=f"Outage report {n}", record_key=f"outage:{n}")
            for n in range(20)
        ]
        assert {t["status"] for t in tasks} == {"pending_submit"}

        def attempts() -> list[int]:
            return [relay.ctx.tasks.get(t["task_id"]).submit_attempts for t in tasks]

        eventually(
            lambda: min(attempts()) >= FAILED_HANDOVERS,
            600,
            f"each submission to fail {FAILED_HANDOVERS} hand-overs to the unreachable API",
            every=0.5,
            show=lambda: f"attempts per task: {attempts()}",
        )
        outage = time.monotonic() - went
        served = ServedApp(app, port=port).start()  # and comes back on the same address

        def all_done():
            views = [client.get(f"/v1/tasks/{t['task_id']}").json() for t in tasks]
            return views if all(v["status"] == "completed" for v in views) else None

        views = eventually(
            all_done,
            600,
            "every submission to complete",
            every=1,  # 20 requests a look
            show=lambda: [relay.ctx.tasks.get(t["task_id"]).status for t in tasks],
        )
        assert len({v["run_id"] for v in views}) == 20
        assert client.get("/v1/me").json()["usage"]["task_count"] == 20
        reliability(
            fault=f"API unreachable while 20 documents were submitted, until each had failed "
            f"{FAILED_HANDOVERS} hand-overs",
            tried=20,
            lost=0,
            duplicated="0 (20 runs, usage counted 20 times)",
            notes=f"accepted as pending_submit, handed over by RQ retries once the API was back (down "
            f"{outage:.0f} s, with retries a second apart)",
        )
    finally:
        served.stop()
        app.extensions["sandbox"].stop()


def test_each_webhook_five_times_to_two_web_processes(
    make_relay, make_sandbox, receiver, reliability
):
    api = make_sandbox(webhook_copies=5)  # every webhook is sent five times, concurrently
    port = free_port()
    relay = make_relay(sandbox=api, worker=False, public_url=f"http://127.0.0.1:{port}")
    web = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"],
        env=relay.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", processes=[web])
        relay.start_worker()
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            headers={"Authorization": f"Bearer {relay.api_key}"},
        )
        client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
        ).raise_for_status()
        tasks = [relay.submit(client, prompt=f"Duplicate storm {n}") for n in range(20)]
        views = [relay.wait_task(client, t["task_id"], timeout=300) for t in tasks]
        # the API records a webhook's attempt once all five copies are answered: then the storm is over
        eventually(
            lambda: (
                (sent := api.runtime.webhooks.deliveries())
                and len(sent) == 20
                and all(d["status"] == "delivered" for d in sent)
            ),
            300,
            "every copy of every webhook answered",
        )

        def hook_delivered(task_id: str) -> bool:
            return [
                d["state"] for d in client.get(f"/v1/tasks/{task_id}").json()["deliveries"]
            ] == ["delivered"]

        eventually(
            lambda: all(hook_delivered(t["task_id"]) for t in tasks),
            300,
            "the 20 hook deliveries to land",
            every=0.5,
        )
        events = client.get("/v1/events?limit=100").json()["items"]
        hook_ids = {r.headers["Webhook-Id"] for r in receiver.requests}
        usage = client.get("/v1/me").json()["usage"]
        assert len(receiver.requests) == 20 and len(hook_ids) == 20
        assert len(events) == 20 and {e["data"]["task_id"] for e in events} == {
            t["task_id"] for t in tasks
        }
        assert usage["task_count"] == 20 and usage["credits_used"] == sum(
            v["credits_used"] for v in views
        )
        metrics = {
            (s.name, s.labels.get("outcome")): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for s in family.samples
        }
        # the storm really came: 100 webhooks,
        assert metrics[("relay_webhooks_total", "accepted")] == 20
        # 80 of them answered as duplicates
        assert metrics[("relay_webhooks_total", "duplicate")] == 80
        reliability(
            fault="each upstream webhook sent 5 times at once, to 2 gunicorn web processes (20 tasks)",
            tried=100,
            lost=0,
            duplicated="0 (20 hook deliveries, 20 events, usage counted once each)",
            notes="deduplicated by webhook-id in one Lua call at intake",
        )
    finally:
        stop_processes([web], timeout=10)
