"""The README's run command, end to end in a child process: Redis, the sandbox, a real generation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from openpyxl import load_workbook


def relay(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def free_port() -> int:
    from app.cli.devstack import free_port

    return free_port()


def test_relay_dev_produces_a_real_workbook_and_stops_what_it_started():
    """Redis, the sandbox, the relay's web service, a worker and the scheduler; the demo job goes through
    the relay and its signed webhook."""
    run_dir = Path(tempfile.mkdtemp(prefix="relay-dev-"))  # short: holds the Redis unix socket
    env = {**os.environ, "SANDBOX_TASK_SECONDS": "0.3"}
    done = relay("dev", "--run-dir", str(run_dir), "--port", str(free_port()), "--exit-after-demo", env=env)
    assert done.returncode == 0, done.stderr
    path = Path(re.search(r"^file\s+(\S+)$", done.stdout, re.M).group(1))
    assert path.suffix == ".xlsx" and path.is_relative_to(run_dir / "deliveries" / "demo"), "delivered to a folder"
    assert load_workbook(path).active["A1"].value.startswith("Q3 Sales Report")
    assert re.search(r"^download\s+http://127\.0\.0\.1:\d+/files/", done.stdout, re.M)
    assert "completed" in done.stderr  # the progress bar reached the end
    assert "POST /webhooks/upstream/" in (run_dir / "web.log").read_text(), "the result came by webhook"
    assert not (run_dir / "redis" / "redis.sock").exists(), "Redis was stopped"


def test_relay_sandbox_orgs_create_prints_the_key_once(redis_url):
    env = {**os.environ, "SANDBOX_REDIS_URL": redis_url, "SANDBOX_KEY_PREFIX": "cli-test:"}
    created = relay("sandbox", "orgs", "create", "finance", env=env, timeout=30)
    assert created.returncode == 0, created.stderr
    assert re.search(r"^api key\s+ovt_test_\S+$", created.stdout, re.M)
    assert re.search(r"^webhook secret\s+whsec_\S+$", created.stdout, re.M)
    listed = relay("sandbox", "orgs", "list", env=env, timeout=30)
    assert "finance" in listed.stdout and "ovt_test_" not in listed.stdout


def test_sandbox_server_stops_promptly_on_sigterm(redis_url):
    import signal

    from app.cli.devstack import free_port, wait_until_up

    port = free_port()
    env = {**os.environ, "SANDBOX_REDIS_URL": redis_url, "SANDBOX_KEY_PREFIX": "sigterm-test:"}
    server = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_up(f"http://127.0.0.1:{port}/healthz")
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0, "a clean exit, not a deadlock waiting for the kill"


def test_relay_dev_explains_a_busy_port():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = relay("dev", "--port", str(port), "--exit-after-demo", env=dict(os.environ), timeout=60)
    assert done.returncode != 0 and f"port {port} is already in use" in done.stderr


def test_ctrl_c_stops_everything_relay_dev_started_while_tasks_run_and_deliveries_retry():
    """SIGINT to relay dev's process group, with no terminal (SIGINT inherited ignored, as a shell's background
    job has it), while a task runs and a delivery retries: every process of the session is gone in 15 s."""
    import signal
    import time

    import httpx

    run_dir = Path(tempfile.mkdtemp(prefix="relay-dev-"))
    port = free_port()
    output = run_dir / "dev.out"
    with output.open("wb") as out:
        dev = subprocess.Popen([sys.executable, "-m", "app.cli", "dev", "--run-dir", str(run_dir), "--port", str(port)],
                               env={**os.environ, "SANDBOX_TASK_SECONDS": "0.3"}, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in output.read_text() and time.monotonic() < deadline:
            assert dev.poll() is None, output.read_text()
            time.sleep(0.2)
        api_key = (run_dir / "demo-api-key.txt").read_text().strip()
        nobody = f"http://127.0.0.1:{free_port()}/hook"  # refused: the delivery retries
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {api_key}"}) as relay:
            relay.post("/v1/documents", json={"format": "excel", "prompt": "Still running [[duration=120]]"})
            retried = relay.post("/v1/documents", json={"format": "excel", "prompt": "Quick", "destinations": [
                {"kind": "webhook", "config": {"url": nobody}}]}).json()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = [d["state"] for d in relay.get(f"/v1/tasks/{retried['task_id']}").json()["deliveries"]]
                if states == ["retrying"]:
                    break
                time.sleep(0.2)
            assert states == ["retrying"], states
        session = _processes_of_session(dev.pid)
        assert len(session) >= 6, "relay dev, Redis, the sandbox, gunicorn and its processes, a worker, the scheduler"
        os.killpg(dev.pid, signal.SIGINT)
        deadline = time.monotonic() + 15
        while _processes_of_session(dev.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _processes_of_session(dev.pid)
        assert not left, f"still running 15 s after Ctrl-C: {left}\n{output.read_text()}"
        assert dev.wait(timeout=1) == 0
    finally:
        for pid in _processes_of_session(dev.pid):
            os.kill(pid, signal.SIGKILL)


def _processes_of_session(session: int) -> dict[int, str]:
    """Live processes (not zombies) of a session, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session or " Z " in (entry / "stat").read_text().split(")", 1)[1][:4]:
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except (OSError, IndexError):
            continue
    return found
