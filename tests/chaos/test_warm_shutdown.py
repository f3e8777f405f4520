"""Warm shutdowns, again and again: a worker told to stop (SIGTERM) in the middle of a delivery finishes
it, exits 0, and the next worker goes on; nothing is lost or repeated."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from app.cli.devstack import free_port, stop_processes, wait_until_up
from tests.support.servers import eventually

TERMS = 25


def test_sigterm_in_the_middle_of_a_delivery_25_times_in_a_row(make_relay, receiver, reliability):
    relay = make_relay(worker=False, delivery_threads=1)  # one delivery at a time: each worker stops inside one
    receiver.delay = 0.3
    client = relay.client()
    hook = [{"kind": "webhook", "config": {"url": receiver.url}}]
    tasks = [relay.submit(client, prompt=f"Warm shutdown {n}", destinations=hook) for n in range(TERMS + 3)]
    for n in range(TERMS):
        worker = relay.start_worker()
        eventually(lambda: receiver.arrived > len(receiver.requests), 30, f"delivery {n} to be in flight")
        worker.send_signal(signal.SIGTERM)
        status = _exit_status(relay, worker)
        assert status == 0, f"stop {n + 1}: exit status {status}\n{relay.log_of(worker)}"
        assert receiver.arrived == len(receiver.requests), "the worker exited with a delivery in flight"
    relay.start_worker()  # the last one drains what is left

    def all_delivered():
        views = [client.get(f"/v1/tasks/{t['task_id']}").json() for t in tasks]
        states = Counter(d["state"] for view in views for d in view["deliveries"])
        return states if states == {"delivered": len(tasks)} else None

    eventually(all_delivered, 60, "every delivery to be delivered", every=0.5)  # a request per task
    webhook_ids = Counter(r.headers["Webhook-Id"] for r in receiver.requests)
    assert len(webhook_ids) == len(tasks) and set(webhook_ids.values()) == {1}, webhook_ids
    reliability(fault=f"SIGTERM a worker in the middle of a delivery, {TERMS} times in a row (0.3 s subscriber)",
                tried=TERMS, lost=0, duplicated="0",
                notes="warm shutdown: each worker finished the delivery in hand, joined its threads and exited 0")


def _exit_status(relay, process, timeout: float = 30) -> int:
    """The process's exit status; if it has not exited in time, its threads' stacks (SIGUSR1, faulthandler)
    are in the failure."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        process.kill()
        raise AssertionError(f"still running {timeout:g} s after SIGTERM:\n{relay.log_of(process)[-12000:]}") from None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["web", "scheduler", "worker"])
def test_each_long_running_process_exits_0_on_a_stop_signal(make_relay, command, signum):
    relay = make_relay(worker=False)
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", command, *(["--port", str(port)] if command == "web" else [])]
    log = relay.log_dir / f"{command}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=relay.env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        if command == "web":
            wait_until_up(f"http://127.0.0.1:{port}/healthz")
        else:
            eventually(lambda: "starting" in log.read_text() or "Listening on" in log.read_text(), 30,
                       f"relay {command} to start")
        process.send_signal(signum)
        status = process.wait(timeout=30)
    finally:
        stop_processes([process])
    text = log.read_text(errors="replace")
    assert status == 0 and "Fatal Python error" not in text, f"exit status {status}\n{text}"


def _misses_the_first_stop() -> None:
    """A scheduler's process as a stop signal during the worker's start finds it: the first SIGTERM is
    swallowed (by the handler it inherited), the next ends it."""
    signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    time.sleep(60)  # then it would end by itself, exit code 0: what RQ's one SIGTERM and wait come to


def test_a_scheduler_that_missed_the_stop_signal_is_stopped_anyway():
    import multiprocessing
    from types import SimpleNamespace

    from app.work.worker import RelayWorker

    process = multiprocessing.get_context("fork").Process(target=_misses_the_first_stop)
    process.start()
    time.sleep(0.3)  # its handler is in place
    worker = RelayWorker.__new__(RelayWorker)  # only its scheduler matters here
    worker.scheduler = SimpleNamespace(_process=process)
    worker.stop_scheduler()
    assert not process.is_alive() and process.exitcode == -signal.SIGTERM, "a second SIGTERM ended it"
