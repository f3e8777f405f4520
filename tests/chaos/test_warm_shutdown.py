"""Warm shutdowns, again and again: a worker told to stop (SIGTERM) in the middle of a delivery finishes
it, exits 0, and the next worker goes on; nothing is lost or repeated."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from app.cli.devstack import free_port, stop_processes, wait_until_up
from tests.support.servers import eventually

TERMS, AT_ONCE = 15, 5
READY = "ready: working, and a stop signal ends it warmly"
WARM = "warm shut down requested"


@pytest.mark.long
def test_sigterm_in_the_middle_of_a_delivery_15_times_in_a_row(make_relay, receiver, reliability):
    """Three rounds of five workers: each worker holds one delivery the subscriber keeps waiting, is told to
    stop, and only then is the subscriber let go; each finishes the delivery in hand, exits 0, and takes no
    other. Every delivery lands once."""
    # one delivery at a time: each worker stops inside one
    relay = make_relay(worker=False, delivery_threads=1)
    receiver.hold()
    client = relay.client()
    hook = [{"kind": "webhook", "config": {"url": receiver.url}}]
    tasks = [
        relay.submit(client, prompt=f"Warm shutdown {n}", destinations=hook)
        for n in range(TERMS + 3)
    ]
    for round_ in range(TERMS // AT_ONCE):
        workers = [relay.start_worker() for _ in range(AT_ONCE)]
        taken = round_ * AT_ONCE + AT_ONCE
        for worker in workers:
            _wait_for_line(relay, worker, READY)
        eventually(
            lambda taken=taken: receiver.arrived == taken,
            120,
            f"round {round_ + 1}: a held delivery in each worker",
            show=lambda taken=taken: f"{AT_ONCE - taken + receiver.arrived} held",
        )
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:  # the stop is seen while the delivery is still held
            _wait_for_line(relay, worker, WARM)
        receiver.release()
        for n, worker in enumerate(workers):
            status = _exit_status(relay, worker)
            assert status == 0, (
                f"round {round_ + 1}, worker {n + 1}: exit status {status}\n{relay.log_of(worker)}"
            )
        assert receiver.in_flight == 0, "a worker exited with a delivery in flight"
        assert receiver.arrived == taken, "a worker told to stop took another delivery"
        receiver.hold()
    receiver.release()
    relay.start_worker()  # the last one drains what is left

    def all_delivered():
        views = [client.get(f"/v1/tasks/{t['task_id']}").json() for t in tasks]
        states = Counter(d["state"] for view in views for d in view["deliveries"])
        return states if states == {"delivered": len(tasks)} else None

    # a request per task
    eventually(all_delivered, 120, "every delivery to be delivered", every=0.5)
    webhook_ids = Counter(r.headers["Webhook-Id"] for r in receiver.requests)
    assert len(webhook_ids) == len(tasks) and set(webhook_ids.values()) == {1}, webhook_ids
    reliability(
        fault=f"SIGTERM a worker in the middle of a delivery, {TERMS} times ({AT_ONCE} workers at a time)",
        tried=TERMS,
        lost=0,
        duplicated="0",
        notes="warm shutdown: each worker, stopped while its subscriber held the delivery, finished it, "
        "took no other, joined its threads and exited 0",
    )


def _wait_for_line(relay, process, line: str) -> None:
    eventually(
        lambda: line in relay.log_of(process) or process.poll() is not None,
        300,
        f"worker {process.pid} to log {line!r}",
    )
    assert process.poll() is None, (
        f"worker {process.pid} exited ({process.returncode}):\n{relay.log_of(process)}"
    )


def _exit_status(relay, process, timeout: float = 120) -> int:
    """The process's exit status; if it has not exited in time, its threads' stacks (SIGUSR1, faulthandler)
    are in the failure."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # faulthandler writes every thread's stack to the log
        with contextlib.suppress(AssertionError):
            eventually(lambda: "most recent call first" in relay.log_of(process), 30, "the stacks")
        process.kill()
        raise AssertionError(
            f"still running {timeout:g} s after SIGTERM:\n{relay.log_of(process)[-12000:]}"
        ) from None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["web", "scheduler", "worker"])
def test_each_long_running_process_exits_0_on_a_stop_signal(make_relay, command, signum):
    relay = make_relay(worker=False)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "app.cli",
        command,
        *(["--port", str(port)] if command == "web" else []),
    ]
    log = relay.log_dir / f"{command}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=relay.env(), stdout=out, stderr=subprocess.STDOUT)
    # from these on, the process has its stop handlers in place: gunicorn's arbiter answers once it has them
    ready = {"scheduler": ": starting...", "worker": READY}
    try:
        if command == "web":
            wait_until_up(f"http://127.0.0.1:{port}/healthz", processes=[process])
        else:
            eventually(
                lambda: ready[command] in log.read_text() or process.poll() is not None,
                300,
                f"relay {command} to be ready",
            )
        process.send_signal(signum)
        status = process.wait(timeout=120)
    finally:
        stop_processes([process])
    text = log.read_text(errors="replace")
    assert status == 0 and "Fatal Python error" not in text, f"exit status {status}\n{text}"


def _misses_the_first_stop(handler_set) -> None:
    """A scheduler's process as a stop signal during the worker's start finds it: the first SIGTERM is
    swallowed (by the handler it inherited), the next ends it."""
    signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    handler_set.set()
    # then it would end by itself, exit code 0: what RQ's one SIGTERM and wait come to
    time.sleep(600)


def test_a_scheduler_that_missed_the_stop_signal_is_stopped_anyway():
    import multiprocessing
    from types import SimpleNamespace

    from app.work.worker import RelayWorker

    fork = multiprocessing.get_context("fork")
    handler_set = fork.Event()
    process = fork.Process(target=_misses_the_first_stop, args=(handler_set,))
    process.start()
    assert handler_set.wait(120), "the scheduler's process never set its handler"
    worker = RelayWorker.__new__(RelayWorker)  # only its scheduler matters here
    worker.scheduler = SimpleNamespace(_process=process)
    worker.stop_scheduler()
    assert not process.is_alive() and process.exitcode == -signal.SIGTERM, (
        "a second SIGTERM ended it"
    )


def test_the_cron_scheduler_stopped_before_its_first_step_ends_cleanly(make_relay, monkeypatch):
    """Found by the stop-signal test on a loaded machine: a SIGTERM that came before the scheduler's first
    step (its birth in RQ's registry) made it register a death RQ never heard of, and exit 1."""
    from app.work import worker

    relay = make_relay(worker=False)
    # the signal is there as soon as the handler is set, before the loop's first step
    monkeypatch.setattr(worker, "_on_stop_signals", lambda handler: handler())
    cron = worker.RelayCron(connection=relay.ctx.rq_redis, name="relay-scheduler-test")
    cron.start()  # returns, and raises nothing
    assert cron.name not in [s.name for s in worker.CronScheduler.all(relay.ctx.rq_redis)]
