"""Generation endpoints, the task state machine, phases, resume, sync promotion, pool, cancel, expiry."""

from __future__ import annotations

import io

import httpx
from docx import Document
from openpyxl import load_workbook
from pptx import Presentation

import schemas
from tests.sandbox_fixtures import fetch
from tests.support.servers import eventually

PHASES = [
    "preflight",
    "acquiring_pool",
    "loading_doc",
    "restoring_state",
    "agent_turn",
    "executing_plan",
    "compacting_context",
    "saving_doc",
    "uploading_result",
    "dispatching_webhook",
]


def download(url: str) -> httpx.Response:
    response = fetch(url)
    assert response.status_code == 200, response.text
    return response


def test_sync_excel_returns_a_real_workbook(sandbox):
    with sandbox.client() as client:
        response = client.post(
            "/excel/generate", json={"prompt": "Create a Q3 sales report by region"}
        )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["run_id"].startswith("run_") and body["task_id"].startswith("task_")
    assert body["credits_used"] > 0 and body["duration_ms"] >= 0 and "sheet" in body["summary"]
    file = download(body["download_url"])
    assert file.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml"
    )
    assert "filename=workbook.xlsx" in file.headers["content-disposition"]
    workbook = load_workbook(io.BytesIO(file.content))
    sheet = workbook.active
    assert sheet["A1"].value.startswith("Q3 Sales Report")
    assert [sheet.cell(row=r, column=1).value for r in range(4, 9)] == [
        "North",
        "South",
        "East",
        "West",
        "Central",
    ]
    assert sheet._charts, "a chart where it fits"


def test_every_endpoint_builds_its_format(sandbox):
    with sandbox.client() as client:
        word = client.post("/word/generate", json={"prompt": "A memo on hiring plans"}).json()
        slides = client.post("/slides/generate", json={"prompt": "Board deck on revenue"}).json()
        outline = client.post(
            "/slides/outline", json={"prompt": "Outline for a product launch"}
        ).json()
        text = client.post("/text/summary", json={"prompt": "Summarise Q3 costs"}).json()
    document = Document(io.BytesIO(download(word["download_url"]).content))
    assert document.tables and document.paragraphs[0].text == "Memo Hiring Plans"
    assert [p.style.name for p in document.paragraphs] == ["Title", "Normal", *["List Bullet"] * 3]
    assert document.tables[0].style.name == "Light Grid Accent 1"
    deck = Presentation(io.BytesIO(download(slides["download_url"]).content))
    assert any(shape.has_chart for slide in deck.slides for shape in slide.shapes)
    assert [s.slide_layout.name for s in deck.slides] == [
        "Title Slide",
        "Title and Content",
        "Title Only",
    ]
    assert len(Presentation(io.BytesIO(download(outline["download_url"]).content)).slides) >= 3
    assert download(text["download_url"]).text.startswith("# Summarise Q3 Costs")


def test_async_answers_at_once_and_task_has_every_documented_field(sandbox):
    with sandbox.client() as client:
        accepted = client.post(
            "/excel/generate", json={"prompt": "Model [[hold=model]]", "async": True}
        )
        assert accepted.status_code == 202
        body = accepted.json()
        assert body == {"run_id": body["run_id"], "task_id": body["task_id"], "status": "queued"}
        assert accepted.headers["Location"] == f"/tasks/{body['task_id']}"
        sandbox.wait_held("model")
        # the agent's time is on the sandbox clock: half a second passes while it works
        sandbox.advance(0.5)
        sandbox.release("model")
        task = sandbox.wait_task(client, body["task_id"])
    assert set(task) == {
        "task_id",
        "run_id",
        "status",
        "phase",
        "turn_index",
        "progress",
        "created_at",
        "updated_at",
        "result",
        "error",
        "credits_used",
        "duration_ms",
    }
    schemas.validate("upstream/task.json", task)
    assert task["status"] == "completed" and task["progress"] == 100 and task["phase"] is None
    assert set(task["result"]) == {"download_url", "edit_url", "summary", "artifacts"}
    assert task["result"]["artifacts"][0]["file_name"] == "workbook.xlsx"
    assert task["duration_ms"] >= 500


def walk(sandbox, client: httpx.Client, body: dict) -> list[tuple[str, str | None, int]]:
    """Run a task to its end; the (status, phase, progress) it went through, from the sandbox's phase log."""
    task = sandbox.wait_task(
        client, client.post("/excel/generate", json={**body, "async": True}).json()["task_id"]
    )
    assert task["status"] == "completed", task
    return [(p["status"], p["phase"], p["progress"]) for p in sandbox.phases(task["task_id"])]


def test_phases_walk_in_documented_order(sandbox, receiver):
    with sandbox.client() as client:
        first = walk(sandbox, client, {"prompt": "Sales"})
        run_id = client.get("/runs", params={"limit": 1}).json()["items"][0]["run_id"]
        resumed = walk(
            sandbox,
            client,
            {"prompt": "Add forecast", "run_id": run_id, "webhook_url": receiver.url},
        )
    loop = ["agent_turn", "executing_plan", "agent_turn", "executing_plan"]
    assert [p for _, p, _ in first] == [
        "preflight",
        "acquiring_pool",
        "acquiring_pool",
        "loading_doc",
        *loop,
        "saving_doc",
        "uploading_result",
        None,
    ]
    assert [p for _, p, _ in resumed] == [
        "preflight",
        "acquiring_pool",
        "acquiring_pool",
        "loading_doc",
        "restoring_state",
        *loop,
        "saving_doc",
        "uploading_result",
        "dispatching_webhook",
        None,
    ]
    for states in (first, resumed):
        statuses = [s for s, _, _ in states]
        assert statuses == ["queued", "queued", *["running"] * (len(states) - 3), "completed"], (
            states
        )
        phases = [p for _, p, _ in states if p]
        order = [PHASES.index(p) for p in dict.fromkeys(phases)]  # first appearance of each phase
        assert order == sorted(order), phases
        progress = [pct for _, _, pct in states]
        assert progress == sorted(progress) and progress[-1] == 100, "progress never goes backwards"


def test_resume_changes_the_same_document(sandbox):
    with sandbox.client() as client:
        first = client.post("/excel/generate", json={"prompt": "Create a Q3 sales report"}).json()
        second = client.post(
            "/excel/generate",
            json={"prompt": "Now add a forecast tab for FY26", "run_id": first["run_id"]},
        ).json()
        tasks = [client.get(f"/tasks/{t['task_id']}").json() for t in (first, second)]
        run = client.get(f"/runs/{first['run_id']}").json()
    assert second["run_id"] == first["run_id"] and second["task_id"] != first["task_id"]
    before = load_workbook(io.BytesIO(download(first["download_url"]).content)).sheetnames
    resumed = load_workbook(io.BytesIO(download(second["download_url"]).content))
    assert resumed.sheetnames == [*before, "Forecast Tab FY26"]
    assert [len(sheet._charts) for sheet in resumed] == [1, 1], "the earlier sheet keeps its chart"
    assert resumed.active.title == "Forecast Tab FY26"
    assert tasks[1]["turn_index"] > tasks[0]["turn_index"]
    assert second["credits_used"] < first["credits_used"], "a resumed turn is cheaper"
    assert (
        run["task_count"] == 2
        and run["credits_used"] == first["credits_used"] + second["credits_used"]
    )


def test_resuming_word_and_slides_adds_to_the_previous_document(sandbox):
    with sandbox.client() as client:
        memo = client.post("/word/generate", json={"prompt": "A memo on hiring plans"}).json()
        more = client.post(
            "/word/generate", json={"prompt": "Add the budget", "run_id": memo["run_id"]}
        ).json()
        deck = client.post("/slides/generate", json={"prompt": "Board deck on revenue"}).json()
        extra = client.post(
            "/slides/generate", json={"prompt": "Add costs", "run_id": deck["run_id"]}
        ).json()
    before, after = (
        Document(io.BytesIO(download(t["download_url"]).content)) for t in (memo, more)
    )
    assert [p.text for p in after.paragraphs][: len(before.paragraphs)] == [
        p.text for p in before.paragraphs
    ]
    assert len(after.tables) == 2 and [
        p.text for p in after.paragraphs if p.style.name == "Heading 1"
    ] == ["Budget"]
    slides_before, slides_after = (
        Presentation(io.BytesIO(download(t["download_url"]).content)) for t in (deck, extra)
    )
    assert len(slides_after.slides) == len(slides_before.slides) + 2
    assert sum(shape.has_chart for slide in slides_after.slides for shape in slide.shapes) == 2


def test_resume_through_the_wrong_endpoint_is_refused(sandbox):
    with sandbox.client() as client:
        first = client.post("/excel/generate", json={"prompt": "Sales"}).json()
        wrong = client.post("/word/generate", json={"prompt": "more", "run_id": first["run_id"]})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "run_id"


def test_sync_call_past_the_ceiling_is_promoted_to_202(make_sandbox):
    sandbox = make_sandbox(sync_ceiling_seconds=0.2)
    with sandbox.client() as client:
        # ends after release
        response = client.post("/excel/generate", json={"prompt": "Big model [[hold=big]]"})
        assert response.status_code == 202
        body = response.json()
        assert body["message"] == "Sync ceiling (0.2s) exceeded; continuing asynchronously."
        assert body["status"] in ("queued", "running")
        sandbox.release("big")
        assert sandbox.wait_task(client, body["task_id"])["status"] == "completed"


def test_full_pool_promotes_sync_calls_at_once_and_queues_tasks(make_sandbox):
    sandbox = make_sandbox(pool_size=1)
    with sandbox.client() as client:
        client.post(
            "/excel/generate", json={"prompt": "Long [[hold=busy]]", "async": True}
        ).raise_for_status()
        sandbox.wait_held("busy")  # running, and the pool's one worker stays taken
        promoted = client.post("/excel/generate", json={"prompt": "Short"})
        assert promoted.status_code == 202
        assert "intermediate delay" in promoted.json()["message"]
        waiting = client.get(f"/tasks/{promoted.json()['task_id']}").json()
        assert (waiting["status"], waiting["phase"]) == ("queued", "acquiring_pool")
        sandbox.release("busy")
        assert sandbox.wait_task(client, promoted.json()["task_id"])["status"] == "completed"


def test_an_organisations_load_counts_its_tasks_in_the_api(make_sandbox):
    sandbox = make_sandbox(pool_size=1)
    with sandbox.client() as client:
        busy, *queued = [
            client.post(
                "/excel/generate", json={"prompt": f"Report {n} [[hold=load]]", "async": True}
            ).json()
            for n in range(3)
        ]
        sandbox.wait_held("load")
        assert sandbox.load() == {"org_id": sandbox.org_id, "active": 3, "max_active": 3}
        client.post(f"/tasks/{queued[0]['task_id']}/cancel").raise_for_status()
        assert sandbox.load()["active"] == 2
        sandbox.release("load")
        for task in (busy, queued[1]):
            assert sandbox.wait_task(client, task["task_id"])["status"] == "completed"
    assert sandbox.load() == {"org_id": sandbox.org_id, "active": 0, "max_active": 3}
    assert sandbox.load(sandbox.new_org()["org_id"])["max_active"] == 0


def test_failure_marker_fails_the_task(sandbox):
    with sandbox.client() as client:
        body = client.post(
            "/excel/generate", json={"prompt": "Sales [[fail]]", "async": True}
        ).json()
        task = sandbox.wait_task(client, body["task_id"])
        sync = client.post("/excel/generate", json={"prompt": "Sales [[fail]]"}).json()
    assert task["status"] == "failed" and task["result"] is None
    assert task["error"]["code"] == "agent_error"
    assert sync["status"] == "failed" and sync["error"]["code"] == "agent_error"


def test_cancel_running_and_queued_tasks(make_sandbox):
    sandbox = make_sandbox(pool_size=1)
    with sandbox.client() as client:
        running = client.post(
            "/excel/generate", json={"prompt": "Long [[hold=long]]", "async": True}
        ).json()
        queued = client.post("/excel/generate", json={"prompt": "Next", "async": True}).json()
        sandbox.wait_held("long")  # running, and never released: only the cancel ends it
        assert client.post(f"/tasks/{queued['task_id']}/cancel").status_code == 200
        assert client.get(f"/tasks/{queued['task_id']}").json()["status"] == "cancelled"
        assert client.post(f"/tasks/{running['task_id']}/cancel").status_code in (200, 202)
        ended = sandbox.wait_task(client, running["task_id"])
        again = client.post(f"/tasks/{running['task_id']}/cancel")
    assert ended["status"] == "cancelled" and ended["error"]["code"] == "cancelled"
    assert again.status_code == 409 and again.json()["error"]["code"] == "task_finished"


def test_task_queued_for_more_than_a_day_expires(make_sandbox):
    sandbox = make_sandbox(pool_size=1)
    with sandbox.client() as client:
        busy = client.post(
            "/excel/generate", json={"prompt": "Long [[hold=busy]]", "async": True}
        ).json()
        sandbox.wait_held("busy")  # running: it must not expire, the queued one behind it must
        stuck = client.post("/excel/generate", json={"prompt": "Waiting", "async": True}).json()
        sandbox.advance(25 * 3600)
        task = client.get(f"/tasks/{stuck['task_id']}").json()
        assert task["status"] == "expired" and task["error"]["code"] == "expired"
        sandbox.release("busy")
        assert sandbox.wait_task(client, busy["task_id"])["status"] == "completed"
        eventually(
            lambda: sandbox.pool()["idle"],
            60,
            "the pool to deal with the expired task",
            show=sandbox.pool,
        )
        assert client.get(f"/tasks/{stuck['task_id']}").json()["status"] == "expired"
    assert "running" not in [p["status"] for p in sandbox.phases(stuck["task_id"])], (
        "the freed worker skipped it"
    )


def test_tasks_running_at_a_restart_end_cancelled_and_queued_ones_resume(
    make_sandbox, redis_url, tmp_path
):
    from sandbox import SandboxConfig, create_app

    first = make_sandbox(pool_size=1, key_prefix="restart-test:")
    with first.client() as client:
        running = client.post(
            "/excel/generate", json={"prompt": "Long [[hold=restart]]", "async": True}
        ).json()
        queued = client.post("/excel/generate", json={"prompt": "Next", "async": True}).json()
        first.wait_held("restart")  # running when the second process starts
    # a second process on the same store, as after a crash of the first
    config = SandboxConfig(
        redis_url=redis_url,
        key_prefix="restart-test:",
        data_dir=tmp_path / "sandbox",
        task_seconds=0.05,
    )
    restarted = create_app(config)
    try:
        store = restarted.extensions["sandbox"].store
        assert store.get_task(running["task_id"])["status"] == "cancelled"
        eventually(
            lambda: store.get_task(queued["task_id"])["status"] == "completed",
            60,
            "the queued task to run after the restart",
            show=lambda: store.get_task(queued["task_id"]),
        )
    finally:
        restarted.extensions["sandbox"].stop()
