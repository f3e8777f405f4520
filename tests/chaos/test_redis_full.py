"""The relay's own Redis full (maxmemory 1 byte, noeviction) in the middle of submits, the API's webhooks
and deliveries, then given room again: every answer meanwhile is 503 with Retry-After (never a 500, never a
2xx for what was not stored), and afterwards every task completes once and every delivery lands once."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.cli.embedded_redis import EmbeddedRedis
from tests.support.servers import eventually

BEFORE, DURING, WEBHOOKS_REFUSED = 12, 10, 3


@pytest.mark.long
def test_a_full_redis_is_answered_with_503_and_nothing_is_lost(
    make_sandbox, make_relay, receiver, tmp_path, reliability
):
    redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-full-")))
    redis.start()
    try:
        # the API retries a webhook for a while (as the real one does, for hours); the reconciler is the backstop
        sandbox = make_sandbox(task_seconds=2.0, webhook_retry_schedule=(1, 2, 4, 8, 8, 8))
        relay = make_relay(
            sandbox,
            redis_url=redis.url,
            worker=False,
            reconcile_quiet_seconds=5,
            delivery_recheck_seconds=5,
        )
        for _ in range(2):
            relay.start_worker()
        relay.start_scheduler()
        destinations = [
            {"kind": "folder", "config": {"path": "full"}},
            {"kind": "webhook", "config": {"url": receiver.url}},
        ]
        client = relay.client()
        accepted = [
            relay.submit(client, prompt=f"Before {n}", destinations=destinations)
            for n in range(BEFORE)
        ]

        relay.ctx.redis.config_set("maxmemory", 1)  # full: every write refused
        # what was answered before, or was being answered as Redis filled up, is not "while full"
        eventually(
            lambda: relay.web.in_flight == 0,
            120,
            "the requests made before Redis was full to be answered",
        )
        before_full = len(relay.web.answers)
        refused = [
            client.post(
                "/v1/documents",
                json={"format": "excel", "prompt": f"During {n}", "destinations": destinations},
            )
            for n in range(DURING)
        ]
        ready = httpx.get(relay.url + "/readyz")

        def webhooks_refused() -> int:
            return sum(
                1
                for _, path, status in relay.web.answers[before_full:]
                if path.startswith("/webhooks/") and status == 503
            )

        # the API's webhooks for the first tasks arrive while it is full, and are refused (then sent again)
        eventually(
            lambda: webhooks_refused() >= WEBHOOKS_REFUSED,
            300,
            f"{WEBHOOKS_REFUSED} of the API's webhooks to meet the full Redis",
        )
        metrics = httpx.get(relay.url + "/metrics").text
        relay.ctx.redis.config_set("maxmemory", 0)  # room again
        full_answers = relay.web.answers[before_full:]

        assert {r.status_code for r in refused} == {503}
        assert all(
            r.headers["Retry-After"] and r.json()["error"]["code"] == "storage_unavailable"
            for r in refused
        )
        assert "full" in refused[0].json()["error"]["message"]
        assert ready.status_code == 503 and ready.json()["redis"] == "out_of_memory"
        while_full = Counter(status for _, path, status in full_answers if path != "/metrics")
        assert set(while_full) == {503}, while_full
        refused_webhooks = sum(
            1 for _, path, status in full_answers if path.startswith("/webhooks/")
        )
        storage_errors = sum(
            sample.value
            for family in text_string_to_metric_families(metrics)
            if family.name == "relay_storage_errors"
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels["kind"] == "out_of_memory"
        )
        assert storage_errors >= DURING

        # the callers try again, as Zapier, Make and the API do after a 503
        accepted += [
            relay.submit(client, prompt=f"During {n}", destinations=destinations)
            for n in range(DURING)
        ]

        def all_delivered():
            views = [client.get(f"/v1/tasks/{t['task_id']}").json() for t in accepted]
            states = Counter(d["state"] for view in views for d in view["deliveries"])
            done = all(v["status"] == "completed" for v in views) and states == {
                "delivered": 2 * len(views)
            }
            return views if done else None

        try:
            # a request per task
            views = eventually(
                all_delivered, 120, "every task to complete and every delivery to land", every=0.5
            )
        except AssertionError:
            stuck = [
                (v["task_id"], v["status"], [d["state"] for d in v["deliveries"]])
                for t in accepted
                if (v := client.get(f"/v1/tasks/{t['task_id']}").json())
            ]
            logs = "\n".join(relay.log_of(p)[-3000:] for p in relay.processes)
            raise AssertionError(f"not settled: {stuck}\n{logs}") from None
        total = BEFORE + DURING
        events = client.get("/v1/events", params={"limit": 100}).json()["items"]
        hook_ids = Counter(r.headers["Webhook-Id"] for r in receiver.requests)
        files = list((tmp_path / "deliveries" / relay.tenant_id / "full").iterdir())
        assert (
            len(views) == total and client.get("/v1/me").json()["usage"]["task_count"] == total
        ), "once each"
        assert sorted(e["data"]["task_id"] for e in events) == sorted(v["task_id"] for v in views)
        assert len(files) == total, "one file per task in the folder"
        assert len(hook_ids) == total and set(hook_ids.values()) == {1}, hook_ids
        assert all(p.poll() is None for p in relay.processes), "workers and the scheduler went on"
    finally:
        redis.stop()
    reliability(
        fault="the relay's Redis full (maxmemory 1 byte) during submits, webhooks and deliveries",
        tried=DURING + refused_webhooks,
        lost=0,
        duplicated="0",
        notes=f"{DURING} submits and {refused_webhooks} webhooks answered 503 with Retry-After, none 500 or "
        f"2xx; {storage_errors:g} storage errors counted; then {total} tasks completed once and "
        f"{2 * total} deliveries landed once",
    )
