"""The upstream client against the sandbox over real HTTP, including its fault knobs."""

from __future__ import annotations

import pytest
from openpyxl import load_workbook

from app.cli.devstack import free_port
from app.core.upstream import (
    PollPolicy,
    RetryPolicy,
    RunExpired,
    UpstreamAuthError,
    UpstreamClient,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)

DAY = 86_400


def client_for(sandbox, sleeps: list[float] | None = None, **retry) -> UpstreamClient:
    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        sandbox.advance(seconds)  # move the sandbox's clock instead of waiting

    return UpstreamClient(sandbox.url, sandbox.api_key, retry=RetryPolicy(**retry), sleep=sleep)


def test_generate_poll_runs_export_and_streamed_download(sandbox, tmp_path):
    updates = []

    def seen(task) -> None:
        updates.append(task)
        sandbox.release("poll")  # the task ends only after the first poll saw it under way

    with client_for(sandbox) as client:
        submitted = client.generate("excel", "Sales by region [[hold=poll]]")
        assert submitted.status == "queued" and not submitted.finished
        task = client.poll(
            submitted.task_id,
            PollPolicy(first_seconds=0.05, step_seconds=0.05, cap_seconds=0.1),
            on_update=seen,
        )
        assert task.finished and task.status == "completed" and task.result["download_url"]
        assert updates[-1] == task and len(updates) >= 2 and not updates[0].finished
        resumed = client.generate("excel", "Add a forecast", run_id=submitted.run_id, async_=False)
        assert (
            resumed.finished
            and resumed.run_id == submitted.run_id
            and resumed.summary.startswith("Added")
        )
        run = client.get_run(submitted.run_id)
        assert run["task_count"] == 2
        location = client.download_location(submitted.run_id)
        size = client.download_to(location, tmp_path / "doc.xlsx")
        assert size == (tmp_path / "doc.xlsx").stat().st_size > 0
        assert load_workbook(tmp_path / "doc.xlsx").sheetnames == ["Sales Region", "Forecast"]
        export = client.export(submitted.run_id, "csv")
        with client.stream(export.download_url) as response:
            chunks = list(response.iter_bytes(64))
        assert len(chunks) > 1 and b"Item,Q1" in b"".join(chunks)
        page = client.list_runs(limit=1)
        assert [r["run_id"] for r in page.items] == [submitted.run_id] and page.next_cursor is None


def test_each_outcome_has_its_exception(sandbox):
    with client_for(sandbox) as client:
        with pytest.raises(UpstreamRejected) as rejected:
            client.generate("excel", "x" * 20_001)
        assert rejected.value.field == "prompt" and rejected.value.status == 400
        with pytest.raises(UpstreamNotFound):
            client.get_task("task_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        done = client.generate("excel", "Sales", async_=False)
        sandbox.advance(31 * DAY)
        with pytest.raises(RunExpired):
            client.generate("excel", "more", run_id=done.run_id)
    with UpstreamClient(sandbox.url, "ovt_test_wrong") as client, pytest.raises(UpstreamAuthError):
        client.get_task(done.task_id)


def test_429_is_retried_after_retry_after(make_sandbox):
    # the window opens at the first call and lasts 50 s of the sandbox clock, which only the client's sleep moves
    # far: the second call is always in it (and a 50 s Retry-After is within what the client waits out in-line)
    sandbox = make_sandbox(rate_limit_requests=1, rate_limit_window_seconds=50)
    sleeps: list[float] = []
    with client_for(sandbox, sleeps, retries=3, base_seconds=0.01) as client:
        client.list_runs()
        client.list_runs()  # over the limit: waits Retry-After, then succeeds
        assert client.throttled == 1
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 50


def test_5xx_is_retried_with_growing_jittered_backoff_then_gives_up(make_sandbox):
    sandbox = make_sandbox(error_rate=1.0)
    sleeps: list[float] = []
    with (
        client_for(sandbox, sleeps, retries=4, base_seconds=1.0, cap_seconds=100) as client,
        pytest.raises(UpstreamUnavailable) as unavailable,
    ):
        client.generate("excel", "x")
    assert unavailable.value.status == 503
    assert len(sleeps) == 4
    for attempt, slept in enumerate(sleeps):
        # Retry-After: 1 is a floor
        assert max(1.0, 0.5 * 2**attempt) <= slept <= max(1.0, 2**attempt), sleeps


def test_connection_refused_is_retried_then_unavailable():
    sleeps: list[float] = []
    client = UpstreamClient(
        f"http://127.0.0.1:{free_port()}", "k", retry=RetryPolicy(retries=2), sleep=sleeps.append
    )
    with client, pytest.raises(UpstreamUnavailable):
        client.generate("excel", "x")
    assert len(sleeps) == 2


def test_other_4xx_are_never_retried(sandbox):
    sleeps: list[float] = []
    with client_for(sandbox, sleeps) as client, pytest.raises(UpstreamRejected):
        client.export("run_01ARZ3NDEKTSV4RRFFQ69G5FAV", "gif")
    assert sleeps == []


def test_poll_policy_follows_the_contract():
    policy = PollPolicy()
    delays = [policy.delay(n) for n in range(30)]
    assert 2 <= delays[0] <= 5
    assert delays == sorted(delays) and max(delays) == 10
    assert policy.give_up_seconds == 1800


def test_sync_call_promoted_to_202_and_cancel(make_sandbox):
    sandbox = make_sandbox(sync_ceiling_seconds=0.2)
    with client_for(sandbox) as client:
        # never released
        promoted = client.generate("excel", "Large model [[hold=large]]", async_=False)
        assert not promoted.finished and promoted.message.startswith("Sync ceiling")
        cancelled = client.cancel_task(promoted.task_id)
        assert cancelled.status in ("cancelled", "running")
        final = client.poll(
            promoted.task_id, PollPolicy(first_seconds=0.05, step_seconds=0.05, cap_seconds=0.1)
        )
    assert final.status == "cancelled" and final.error["code"] == "cancelled"
