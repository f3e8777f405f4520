"""Spend over real HTTP: budgets whose alerts fire once each, a hard cap answering 402 to single submits,
batches and batch rows, a month rolling over; and usage by day, record and format, in JSON and CSV, adding
up to the tasks before and after task retention."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import date, timedelta

from app.domain import budgets, retention
from tests.relay.test_batches import finished
from tests.support.servers import eventually

DAY = 86_400


def _done(relay, client, prompt: str, **body) -> dict:
    """A task of 40 credits (the sandbox's price of a new run with a short prompt)."""
    return relay.wait_task(client, relay.submit(client, prompt=prompt, **body)["task_id"])


def settled(relay, task_ids: list[str]) -> None:
    """Every task's follow-ups ran (deliveries and budget alerts planned), and every delivery planned is done."""
    ctx = relay.ctx

    def state():
        return {
            "fanout": [ctx.tasks.get(task_id).fanout for task_id in task_ids],
            "open deliveries": ctx.redis.zcard(ctx.deliveries.open_key),
        }

    eventually(
        lambda: (
            (now := state())["fanout"] == ["done"] * len(task_ids) and not now["open deliveries"]
        ),
        60,
        "every task's follow-ups and every delivery they planned to settle",
        show=state,
    )


def pin_today_to_the_end_of(relay, monkeypatch, task: dict) -> None:
    """Budgets read the time as the moment ``task`` ended: its credits count on the day it ended (its worker
    wrote them there), so the month they fall in is the one the budgets look at, whatever day the test runs."""
    ended = relay.ctx.tasks.get(task["task_id"]).finished_at
    monkeypatch.setattr(budgets, "clock", lambda: ended)


def test_each_alert_share_fires_once_a_month_to_hooks_and_the_alert_destinations(
    make_relay, receiver, fake_slack
):
    fake_slack.add_channel("C0ALERTS")  # the bot was invited
    relay = make_relay(slack_api_url=fake_slack.url + "/api/")
    with relay.client() as client:
        slack = client.post(
            "/v1/destinations",
            json={
                "name": "ops",
                "kind": "slack",
                "config": {"channel": "C0ALERTS", "bot_token": "xoxb-test-token"},
            },
        ).json()
        client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "budget.threshold"}
        ).raise_for_status()
        put = client.put(
            "/v1/budgets/tenant",
            json={"monthly_credits": 100, "alert_destinations": [{"id": slack["id"]}]},
        )
        assert put.status_code == 200 and put.json()["alert_shares"] == [0.7, 0.9, 1.0]
        # 40, 80 (70%), 120 (90%, 100%), 160
        tasks = [_done(relay, client, f"Memo {n}") for n in range(4)]
        assert [task["credits_used"] for task in tasks] == [40] * 4
        # two at once may arrive either way
        events = sorted(
            (json.loads(r.body) for r in receiver.wait_for(3)),
            key=lambda event: event["data"]["share"],
        )
        status = client.get("/v1/budgets/tenant").json()
    assert [e["data"]["share"] for e in events] == [0.7, 0.9, 1.0], "each share once"
    assert [e["data"]["spent"] for e in events] == [80, 120, 120]
    assert all(e["type"] == "budget.threshold" and e["data"]["scope"] == "tenant" for e in events)
    settled(relay, [task["task_id"] for task in tasks])
    ctx = relay.ctx
    assert len(ctx.redis.keys(f"{ctx.config.key_prefix}budget-alert:*")) == 3, (
        "three shares reached, once each"
    )
    assert len(receiver.requests) == 3, "nothing more comes"

    def alerts():
        texts = sorted(m["text"] for m in fake_slack.messages if m["channel"] == "C0ALERTS")
        return texts if len(texts) == 3 else None

    texts = eventually(alerts, 60, "the three alerts in Slack")
    assert any(
        "This tenant has spent 80 of its 100 monthly credits (70% reached)" in text
        for text in texts
    )
    assert status["spent"] == 160 and status["exceeded"] and status["remaining"] == 0


def test_a_hard_cap_refuses_submits_batches_and_rows_with_402(relay):
    with relay.client() as client:
        client.put(
            "/v1/budgets/records/deal%3Acapped", json={"monthly_credits": 50, "hard_cap": True}
        )
        _done(relay, client, "Memo 1", record_key="deal:capped")
        # ran, and counts: 40 + 15 (a resumed run) of 50
        _done(relay, client, "Memo 2", record_key="deal:capped")
        refused = client.post(
            "/v1/documents",
            json={"format": "excel", "prompt": "Memo 3", "record_key": "deal:capped"},
        )
        other = client.post(
            "/v1/documents", json={"format": "excel", "prompt": "Memo 4", "record_key": "deal:ok"}
        )
        rows = [
            {"record_key": "deal:capped", "prompt": "Row 1"},
            {"record_key": "deal:ok2", "prompt": "Row 2"},
        ]
        batch = finished(
            client,
            client.post("/v1/batches", json={"format": "excel", "rows": rows}).json()["batch_id"],
        )
        failed_row = client.get(
            f"/v1/batches/{batch['batch_id']}/rows", params={"state": "failed"}
        ).json()["items"]

        client.put("/v1/budgets/tenant", json={"monthly_credits": 100, "hard_cap": True})
        whole_batch = client.post("/v1/batches", json={"format": "excel", "rows": rows[1:]})
    error = refused.json()["error"]
    assert (
        refused.status_code == 402
        and error["code"] == "budget_exceeded"
        and error["field"] == "budget"
    )
    assert error["budget"] == {
        "scope": "record",
        "record_key": "deal:capped",
        "monthly_credits": 50,
        "spent": 55,
        "resets_at": error["budget"]["resets_at"],
    }
    assert "resets at" in error["message"] and error["budget"]["resets_at"][10:19] == "T00:00:00"
    assert other.status_code == 202, "another record's submit goes on"
    assert batch["counts"]["failed"] == 1 and batch["counts"]["completed"] == 1
    assert [r["record_key"] for r in failed_row] == ["deal:capped"] and "budget" in failed_row[0][
        "error"
    ]
    assert (
        whole_batch.status_code == 402
        and whole_batch.json()["error"]["budget"]["scope"] == "tenant"
    )


def test_a_month_rolling_over_starts_the_budget_afresh(relay, monkeypatch):
    with relay.client() as client:
        client.put(
            "/v1/budgets/tenant", json={"monthly_credits": 30, "hard_cap": True, "start_day": 1}
        )
        pin_today_to_the_end_of(relay, monkeypatch, _done(relay, client, "Memo 1"))
        assert (
            client.post("/v1/documents", json={"format": "excel", "prompt": "x"}).status_code == 402
        )
    budget = relay.ctx.budgets.get(relay.tenant_id, None)
    now = budgets.view(relay.ctx, relay.tenant_id, budget)
    next_month = date.fromisoformat(now["period"]["resets_at"][:10])
    later = budgets.view(relay.ctx, relay.tenant_id, budget, today=next_month)
    assert (
        later["period"]["from"] == next_month.isoformat()
        and later["spent"] == 0
        and not later["exceeded"]
    )
    # no BudgetExceeded: a new month
    budgets.check(relay.ctx, relay.tenant_id, None, today=next_month)
    assert budgets.period(15, date(2026, 12, 2)) == budgets.Period(
        date(2026, 11, 15), date(2026, 12, 15)
    )
    assert budgets.period(15, date(2026, 12, 15)) == budgets.Period(
        date(2026, 12, 15), date(2027, 1, 15)
    )
    assert budgets.period(1, date(2026, 12, 31)).resets == date(2027, 1, 1)


def test_last_months_spend_does_not_count_over_http(relay, monkeypatch):
    with relay.client() as client:
        put = client.put(
            "/v1/budgets/tenant", json={"monthly_credits": 30, "hard_cap": True}
        ).json()
        last_day_of_last_month = date.fromisoformat(put["period"]["from"]) - timedelta(days=1)
        row = relay.ctx.usage.key_for(relay.tenant_id, last_day_of_last_month.isoformat())
        # as the finish script writes
        relay.ctx.redis.hset(row, mapping={"credits_used": 500, "task_count": 5})
        this_month = client.get("/v1/budgets/tenant").json()
        accepted = client.post("/v1/documents", json={"format": "excel", "prompt": "Memo"})
        pin_today_to_the_end_of(
            relay, monkeypatch, relay.wait_task(client, accepted.json()["task_id"])
        )
        now_spent = client.get("/v1/budgets/tenant").json()
        refused = client.post("/v1/documents", json={"format": "excel", "prompt": "Memo"})
    assert this_month["spent"] == 0 and not this_month["exceeded"], (
        "last month's 500 credits stay in last month"
    )
    assert accepted.status_code == 202 and now_spent["spent"] == 40
    assert refused.status_code == 402 and refused.json()["error"]["budget"]["spent"] == 40


def test_budgets_are_listed_checked_and_removed(relay):
    with relay.client() as client:
        folder = client.post(
            "/v1/destinations", json={"name": "f", "kind": "folder", "config": {"path": "x"}}
        ).json()
        wrong_kind = client.put(
            "/v1/budgets/tenant",
            json={"monthly_credits": 10, "alert_destinations": [{"id": folder["id"]}]},
        )
        negative = client.put("/v1/budgets/tenant", json={"monthly_credits": -1})
        client.put("/v1/budgets/tenant", json={"monthly_credits": 1000})
        client.put("/v1/budgets/records/deal%3A1", json={"monthly_credits": 100, "start_day": 10})
        listed = client.get("/v1/budgets").json()["items"]
        assert client.delete("/v1/budgets/records/deal%3A1").status_code == 204
        gone = client.get("/v1/budgets/records/deal%3A1")
    assert (
        wrong_kind.status_code == 400
        and wrong_kind.json()["error"]["field"] == "alert_destinations.0.id"
    )
    assert negative.status_code == 400 and negative.json()["error"]["field"] == "monthly_credits"
    assert [(b["scope"], b["record_key"], b["start_day"]) for b in listed] == [
        ("tenant", None, 1),
        ("record", "deal:1", 10),
    ]
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "budget_not_found"


def _csv(client, **query) -> list[dict]:
    answer = client.get("/v1/usage", params=query, headers={"Accept": "text/csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


def test_usage_by_day_record_and_format_adds_up_before_and_after_retention(relay):
    with relay.client() as client:
        tasks = [
            _done(relay, client, "Memo a", record_key="deal:a"),
            _done(relay, client, "Memo b", record_key="deal:b", format="word"),
            _done(relay, client, "Again a", record_key="deal:a"),
            _done(relay, client, "No record"),
        ]
        credits = sum(t["credits_used"] for t in tasks)

        def reports():
            return {
                group: client.get("/v1/usage", params={"group_by": group}).json()
                for group in ("day", "record", "format")
            }

        before = reports()
        by_csv = {group: _csv(client, group_by=group) for group in ("day", "record", "format")}
        retention.sweep(relay.ctx, now=time.time() + 31 * DAY)
        assert client.get(f"/v1/tasks/{tasks[0]['task_id']}").status_code == 404, (
            "the tasks are gone"
        )
        after = reports()
    assert before == after, "the daily rows outlive the tasks"
    for group, answer in before.items():
        assert answer["totals"]["credits_used"] == credits and answer["totals"]["task_count"] == 4
        assert sum(item["task_count"] for item in answer["items"]) == 4
        assert sum(float(row["credits_used"]) for row in by_csv[group]) == sum(
            item["credits_used"] for item in answer["items"]
        )
    records = {item["record"]: item for item in before["record"]["items"]}
    assert records["deal:a"]["task_count"] == 2 and records["deal:b"]["task_count"] == 1
    assert records[None]["task_count"] == 1, "the task without a record has an item of its own"
    assert {item["format"]: item["task_count"] for item in before["format"]["items"]} == {
        "excel": 3,
        "word": 1,
    }
    assert list(by_csv["format"][0]) == ["format", "credits_used", "task_count", "duration_ms"]
    assert before["day"]["days"][0]["records"], "group_by=day keeps each day's records, as before"
    bad = relay.client().get("/v1/usage", params={"group_by": "week"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "group_by"


def test_alerts_reach_email_and_teams_in_words(relay, smtp_server, fake_teams):
    from tests.relay.test_email_delivery import email_destination

    with relay.client() as client:
        email = client.post(
            "/v1/destinations", json={"name": "finance", **email_destination(smtp_server)}
        ).json()
        teams = client.post(
            "/v1/destinations",
            json={
                "name": "ops",
                "kind": "teams",
                "config": {"url": fake_teams.url(fake_teams.base)},
            },
        ).json()
        client.put(
            "/v1/budgets/records/deal%3A7",
            json={
                "monthly_credits": 40,
                "alert_shares": [1.0],
                "alert_destinations": [{"id": email["id"]}, {"id": teams["id"]}],
            },
        )
        _done(relay, client, "Memo", record_key="deal:7")
    [message] = eventually(lambda: smtp_server.mailbox.messages or None, 60, "the alert by email")
    assert (
        message["Subject"] == "A credit budget is running out"
        and list(message.iter_attachments()) == []
    )
    assert (
        "Record deal:7 has spent 40 of its 40 monthly credits (100% reached)"
        in message.get_body(("plain",)).get_content()
    )
    [card] = eventually(lambda: fake_teams.posted or None, 60, "the alert in Teams")
    title, text = card["body"]
    assert title["text"] == "A credit budget is running out" and "(100% reached)" in text["text"]
    assert "actions" not in card, "no file to open"
