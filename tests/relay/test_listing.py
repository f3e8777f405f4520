"""Finding and stopping work over real HTTP: GET /v1/tasks with its filters and cursors, GET /v1/records
newest first, POST /v1/tasks/{id}/cancel (at the API, and 409 once a task has ended)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _all_pages(client, path: str, **query) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        answer = client.get(path, params={**query, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_tasks_are_listed_newest_first_filtered_and_paged(relay):
    with relay.client() as client:
        made = [
            relay.submit(
                client,
                prompt=f"Report {n}",
                record_key=f"deal:{n % 2}",
                format="word" if n % 3 == 0 else "excel",
            )
            for n in range(7)
        ]
        for task in made:
            relay.wait_task(client, task["task_id"])
        failed = relay.submit(client, prompt="Broken [[fail]]", record_key="deal:0")
        relay.wait_task(client, failed["task_id"])
        ids = [t["task_id"] for t in made] + [failed["task_id"]]

        pages = _all_pages(client, "/v1/tasks", limit=3)
        assert [len(page) for page in pages] == [3, 3, 2]
        assert [t["task_id"] for page in pages for t in page] == ids[::-1], (
            "newest first, each once"
        )
        only_failed = client.get("/v1/tasks", params={"status": "failed"}).json()["items"]
        assert [t["task_id"] for t in only_failed] == [failed["task_id"]]
        assert only_failed[0]["error"]["message"]
        words = [
            t["task_id"]
            for page in _all_pages(client, "/v1/tasks", format="word", limit=1)
            for t in page
        ]
        assert words == [made[n]["task_id"] for n in (6, 3, 0)]
        record = [
            t["task_id"]
            for t in client.get("/v1/tasks", params={"record_key": "deal:1"}).json()["items"]
        ]
        assert record == [made[n]["task_id"] for n in (5, 3, 1)]
        # the days the tasks were made on (a run may cross midnight UTC), not the test's own clock
        days = [datetime.fromtimestamp(relay.ctx.tasks.get(i).created_at, UTC).date() for i in ids]
        first, last = min(days), max(days)
        assert len(client.get("/v1/tasks", params={"from": first.isoformat()}).json()["items"]) == 8
        assert len(client.get("/v1/tasks", params={"to": last.isoformat()}).json()["items"]) == 8
        assert (
            client.get("/v1/tasks", params={"to": (first - timedelta(days=1)).isoformat()}).json()[
                "items"
            ]
            == []
        )
        bad = client.get("/v1/tasks", params={"status": "lost"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "status"
        bad_day = client.get("/v1/tasks", params={"from": "2026-13-01"})
        assert bad_day.status_code == 400 and bad_day.json()["error"]["field"] == "from"
        assert client.get("/v1/tasks", params={"to": "2026-02-31"}).status_code == 200, (
            "read as Feb 28"
        )


def test_records_are_listed_most_recently_used_first(relay):
    with relay.client() as client:
        for key in ("deal:a", "deal:b", "deal:c", "deal:a"):
            relay.wait_task(
                client, relay.submit(client, prompt=f"Memo for {key}", record_key=key)["task_id"]
            )
        pages = _all_pages(client, "/v1/records", limit=2)
    assert [[r["record_key"] for r in page] for page in pages] == [["deal:a", "deal:c"], ["deal:b"]]
    first = pages[0][0]
    assert first["usage"]["task_count"] == 2 and first["links"]["record"].endswith(
        "/v1/records/deal%3Aa"
    )


def test_cancel_stops_a_running_task_at_the_api_and_an_ended_one_answers_409(relay):
    with relay.client() as client:
        # ends by the cancel
        task = relay.submit(client, prompt="A long model [[hold=never]]", record_key="deal:9")
        answer = client.post(f"/v1/tasks/{task['task_id']}/cancel")
        assert answer.status_code == 202, answer.text
        ended = relay.wait_task(client, task["task_id"])
        assert ended["status"] == "cancelled"
        again = client.post(f"/v1/tasks/{task['task_id']}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "task_ended"
        assert client.post("/v1/tasks/tsk_unknown/cancel").status_code == 404
