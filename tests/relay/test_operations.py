"""What an operator relies on: /healthz, /readyz, /metrics added up across gunicorn and worker processes,
and JSON log lines that carry their context and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.cli.devstack import free_port, stop_processes, wait_until_up
from app.core import logs
from tests.support.servers import eventually


def test_readyz_needs_redis_only_and_missing_workers_are_a_metric(make_relay):
    """A web pod takes webhooks and submits without workers (they wait in Redis): /readyz must not take it
    out of the Service for that, or every webhook would be turned away. No worker is an alert instead."""
    relay = make_relay(worker=False)
    assert httpx.get(relay.url + "/healthz").json() == {"status": "ok"}
    alone = httpx.get(relay.url + "/readyz")
    assert alone.status_code == 200 and alone.json() == {
        "status": "ok",
        "redis": "ok",
        "workers": 0,
    }
    assert _samples(relay.url)[("relay_workers_alive", ())] == 0
    with relay.client() as client:
        relay.submit(client, prompt="taken without a worker")
    worker = relay.start_worker()

    def registered():
        assert worker.poll() is None, f"the worker exited:\n{relay.log_of(worker)}"
        return _samples(relay.url)[("relay_workers_alive", ())] == 1

    eventually(
        registered, 300, "a worker to register (a slow start on a busy machine is no failure)"
    )
    assert httpx.get(relay.url + "/readyz").json() == {"status": "ok", "redis": "ok", "workers": 1}


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def gunicorn_stack(make_relay, tmp_path):
    """The relay as deployed: `relay web` (gunicorn, 2 processes) and `relay worker`, sharing a metrics
    directory, their stdout captured."""
    relay = make_relay(worker=False)
    env = {**relay.env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    port = free_port()
    env["RELAY_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    web_log, worker_log = (tmp_path / "web.log").open("wb"), (tmp_path / "worker.log").open("wb")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=web_log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    try:  # up once its worker has registered too: a slow start on a busy machine is no failure
        wait_until_up(url + "/readyz", processes=processes)
        eventually(
            lambda: (
                httpx.get(url + "/readyz").json()["workers"] == 1
                or any(p.poll() is not None for p in processes)
            ),
            300,
            "the worker to register",
        )
        assert all(p.poll() is None for p in processes), "a process exited"
    except RuntimeError as exc:
        logs = "\n".join(
            f"{name}:\n{(tmp_path / name).read_text()}" for name in ("web.log", "worker.log")
        )
        raise AssertionError(f"{exc}\n{logs}") from None
    yield relay, url, tmp_path
    stop_processes(processes, timeout=10)


def test_metrics_add_up_and_logs_are_json_without_secrets_across_processes(
    gunicorn_stack, receiver, reliability
):
    """One deployed stack for both checks (starting gunicorn's processes and a worker costs seconds of CPU):
    first /metrics adds up across the processes, then their JSON log lines, these requests' too, never carry
    a secret."""
    relay, url, folder = gunicorn_stack
    metrics_add_up_across_processes(relay, url, receiver)
    logs_are_json_and_never_carry_secrets(relay, url, folder, receiver, reliability)


def metrics_add_up_across_processes(relay, url: str, receiver) -> None:
    for _ in range(10):  # spread over both gunicorn processes
        forged = httpx.post(
            url + "/webhooks/upstream/" + relay.ctx.tokens.webhook(relay.tenant_id, "tsk_x"),
            content=b"{}",
            headers={"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
        )
        assert forged.status_code == 401
    client = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {relay.api_key}"}, timeout=30
    )
    task = client.post(
        "/v1/documents",
        json={
            "format": "excel",
            "prompt": "Metrics",
            "destinations": [{"kind": "webhook", "config": {"url": receiver.url}}],
        },
    )
    task_id = task.json()["task_id"]
    eventually(
        lambda: (
            client.get(f"/v1/tasks/{task_id}").json()["deliveries"][0]["state"] == "delivered"
            if client.get(f"/v1/tasks/{task_id}").json()["deliveries"]
            else False
        ),
        60,
        "the delivery",
    )

    samples = eventually(
        lambda: (
            (s := _samples(url)).get(
                ("relay_delivery_attempts_total", (("kind", "webhook"), ("outcome", "delivered")))
            )
            and s
        ),
        60,
        "metrics",
    )
    assert samples[("relay_webhooks_total", (("outcome", "rejected_signature"),))] == 10
    # the API's own webhook
    assert samples[("relay_webhooks_total", (("outcome", "accepted"),))] >= 1
    assert (
        samples[("relay_delivery_attempts_total", (("kind", "webhook"), ("outcome", "delivered")))]
        == 1
    )
    assert samples[("relay_delivery_seconds_count", (("kind", "webhook"),))] == 1
    upstream = [
        v
        for (name, labels), v in samples.items()
        if name == "relay_upstream_request_seconds_count"
        and dict(labels)["endpoint"] == "/excel/generate"
    ]
    assert upstream == [1.0]
    assert ("relay_queue_depth", (("queue", "relay-deliver"),)) in samples
    assert samples[("relay_dead_letters", ())] == 0


def logs_are_json_and_never_carry_secrets(relay, url: str, folder, receiver, reliability) -> None:
    client = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {relay.api_key}"}, timeout=30
    )
    hook_target = receiver.url + "?token=xoxb-not-a-real-token-123456"
    client.post(
        "/v1/hooks", json={"target_url": hook_target, "event": "task.completed"}
    ).raise_for_status()
    # one failed attempt: its error is logged
    receiver.script, earlier = (
        [500],
        len(receiver.requests),
    )
    task = client.post(
        "/v1/documents",
        json={
            "format": "excel",
            "prompt": "Logs",
            "callback_url": receiver.url,
            "callback_headers": {"Authorization": "Bearer cb-secret-value-42"},
        },
    )
    task_id = task.json()["task_id"]
    eventually(
        lambda: len(receiver.requests) >= earlier + 3, 60, "the hook and callback deliveries"
    )
    client.get("/v1/me", headers={"Authorization": "Bearer rly_wrong_key-abcdefghijkl"})

    secrets = [
        relay.api_key,
        relay.sandbox.api_key,
        relay.sandbox.webhook_secret,
        "cb-secret-value-42",
        relay.config.encryption_keys,
        "xoxb-not-a-real-token-123456",
    ]
    for name in ("web.log", "worker.log"):
        text = (folder / name).read_text()
        assert text.strip(), f"{name} is empty"
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {name}"
        lines = _written_lines(text)
        assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    worker_lines = _written_lines((folder / "worker.log").read_text())
    assert any(line.get("task_id") == task_id for line in worker_lines)
    assert any(line.get("delivery_id") for line in worker_lines)
    total = sum(len((folder / name).read_text().splitlines()) for name in ("web.log", "worker.log"))
    reliability(
        fault="secrets (API keys, webhook secret, encryption key, callback and hook credentials) in logs",
        tried=total,
        lost=0,
        duplicated="-",
        notes=f"{len(secrets)} secrets searched in every captured "
        "log line of web and worker: none found",
    )


def _written_lines(text: str) -> list[dict]:
    """The log's lines written whole: the processes still run, and the last may be half written."""
    whole = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


def test_redaction_and_context_fields():
    stream = io.StringIO()
    logs.configure(stream=stream)
    try:
        with logs.log_context(tenant="ten_1", task_id="tsk_1", delivery_id=None):
            logging.getLogger("relay.test").warning(
                "posting with Authorization: Bearer abcdefghijklmnop to https://hooks.slack.com/commands/T/1/x "
                "key rly_ab12cd34_ZXhhbXBsZS1rZXktdmFsdWU token xoxb-1-2-abcdef secret whsec_c2VjcmV0c2VjcmV0 "
                "smtp://relay:hunter2pass@mail.example:587 %s",
                {"client_secret": "s3cr3t-value"},
            )
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue())
    assert (line["tenant"], line["task_id"]) == ("ten_1", "tsk_1") and "delivery_id" not in line
    for secret in (
        "abcdefghijklmnop",
        "hooks.slack.com",
        "rly_ab12cd34_",
        "xoxb-1-2",
        "whsec_c2Vj",
        "hunter2pass",
        "s3cr3t-value",
    ):
        assert secret not in line["message"]
    assert "smtp://relay:[redacted]@mail.example" in line["message"]


def test_relay_metrics_dir_puts_every_command_in_multiprocess_mode(tmp_path):
    """RELAY_METRICS_DIR alone (as `relay dev` sets it) must put a `relay worker` into prometheus_client's
    multiprocess mode, chosen when that library is first imported: before, the command set it too late, and
    a worker's counters never reached /metrics. Importing the commands (as tests do) changes nothing."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["RELAY_METRICS_DIR"] = str(tmp_path / "metrics")
    probe = (
        "import sys, app.cli\nsys.argv = ['relay', '--help']\ntry:\n    app.cli.main()\nexcept SystemExit:\n"
        "    pass\nimport prometheus_client.values as v\nprint(v.ValueClass.__qualname__)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert "MultiProcessValue" in shown.stdout, shown.stdout + shown.stderr
    assert (tmp_path / "metrics").is_dir()
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, app.cli.commands; print(os.environ.get('PROMETHEUS_MULTIPROC_DIR'))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "None"


def test_a_quick_stop_of_a_web_process_never_waits_for_its_thread_pool():
    """Found by the SIGINT test under load: gunicorn's gthread worker stopped its thread pool from the signal
    handler, and hung when the signal came while the main thread held the pool's lock (inside submit())."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from app.web.gunicorn_conf import quit_at_once

    pool = ThreadPoolExecutor(1)
    worker = SimpleNamespace(alive=True, tpool=pool, cfg=SimpleNamespace(worker_int=lambda _: None))
    left: list[int] = []

    def signalled_inside_submit():
        with pool._shutdown_lock:  # where submit() is when the signal lands
            quit_at_once(worker, leave=left.append)(signal.SIGINT, None)

    thread = threading.Thread(target=signalled_inside_submit, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "quit_at_once hung inside submit()"
    assert left == [0] and worker.alive is False
    pool.shutdown()


@pytest.mark.parametrize(("env", "processes"), [({}, 2), ({"WEB_CONCURRENCY": "5"}, 5)])
def test_relay_web_starts_web_concurrency_processes_or_two(monkeypatch, env, processes):
    from click.testing import CliRunner

    from app.cli import services

    started: list[list[str]] = []
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(services.os, "execv", lambda _path, argv: started.append(argv))
    result = CliRunner().invoke(services.web, [], env=env)
    assert result.exit_code == 0, result.output
    assert started[0][started[0].index("--workers") + 1] == str(processes)
