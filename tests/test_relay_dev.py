"""The README's run command, end to end in a child process: Redis, the sandbox, a real generation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from openpyxl import load_workbook

from tests.support.servers import eventually


def relay(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"relay {' '.join(args)} still ran after {timeout:g} s:\n{exc.stdout}\n{exc.stderr}"
        ) from None


def free_port() -> int:
    from app.cli.devstack import free_port

    return free_port()


def test_relay_dev_makes_a_real_workbook_and_ctrl_c_stops_everything_it_started():
    """Redis, the sandbox, the relay's web service, a worker and the scheduler; the demo job goes through the
    relay and its signed webhook. Then SIGINT to relay dev's process group, with no terminal (SIGINT inherited
    ignored, as a shell's background job has it), while a task runs and a delivery retries: every process of the
    session ends, Redis too. (One session for both: each costs a whole stack; `--exit-after-demo`, which ends
    the same way, runs in .ci/run on the installed image.)"""
    run_dir = Path(tempfile.mkdtemp(prefix="relay-dev-"))  # short: holds the Redis unix socket
    port = free_port()
    output = run_dir / "dev.out"
    with output.open("wb") as out:
        dev = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "dev",
                "--run-dir",
                str(run_dir),
                "--port",
                str(port),
            ],
            env={**os.environ, "SANDBOX_TASK_SECONDS": "0.3"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:

        def ready() -> bool:  # a slow start on a busy machine is no failure; relay dev exiting is
            assert dev.poll() is None, f"relay dev exited {dev.returncode}:\n{output.read_text()}"
            return "Press Ctrl-C to stop." in output.read_text()

        eventually(
            ready,
            300,
            "relay dev to finish its demo and say 'Press Ctrl-C to stop.'",
            show=output.read_text,
            every=0.2,
        )
        shown = output.read_text()
        path = Path(re.search(r"^file\s+(\S+)$", shown, re.M).group(1))
        assert (
            path.suffix == ".xlsx"
            and path.parent.name == "demo"
            and path.is_relative_to(run_dir / "deliveries")
        ), "delivered to a folder"
        assert load_workbook(path).active["A1"].value.startswith("Q3 Sales Report")
        assert re.search(r"^download\s+http://127\.0\.0\.1:\d+/files/", shown, re.M)
        assert "completed" in shown  # the progress bar reached the end
        eventually(
            lambda: "POST /webhooks/upstream/" in (run_dir / "web.log").read_text(),
            60,
            "the API's signed webhook in the relay's web log",
        )

        api_key = (run_dir / "demo-api-key.txt").read_text().strip()
        nobody = f"http://127.0.0.1:{free_port()}/hook"  # refused: the delivery retries
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        ) as client:
            client.post(
                "/v1/documents",
                json={"format": "excel", "prompt": "Still running [[hold=forever]]"},
            )
            retried = client.post(
                "/v1/documents",
                json={
                    "format": "excel",
                    "prompt": "Quick",
                    "destinations": [{"kind": "webhook", "config": {"url": nobody}}],
                },
            ).json()

            def states() -> list[str]:
                return [
                    d["state"]
                    for d in client.get(f"/v1/tasks/{retried['task_id']}").json()["deliveries"]
                ]

            eventually(
                lambda: states() == ["retrying"],
                60,
                "the refused delivery to be retrying",
                show=states,
            )
        session = _processes_of_session(dev.pid)
        assert len(session) >= 6, (
            "relay dev, Redis, the sandbox, gunicorn and its processes, a worker, the scheduler"
        )
        os.killpg(dev.pid, signal.SIGINT)
        eventually(
            lambda: not _processes_of_session(dev.pid),
            120,
            "every process of relay dev's session to end",
            show=lambda: f"still running: {_processes_of_session(dev.pid)}\n{output.read_text()}",
            every=0.1,
        )
        assert dev.wait(timeout=60) == 0
        assert not (run_dir / "redis" / "redis.sock").exists(), "Redis was stopped"
    finally:
        for pid in _processes_of_session(dev.pid):
            os.kill(pid, signal.SIGKILL)


def test_relay_sandbox_orgs_create_prints_the_key_once(redis_url, monkeypatch):
    """`relay sandbox ...` hands its arguments, as they are, to `python -m sandbox` in a process of its own
    (execve); that command prints the new organisation's key once. Both halves run here, in this process."""
    from click.testing import CliRunner

    from app.cli import services
    from sandbox.__main__ import cli as sandbox_cli

    env = {"SANDBOX_REDIS_URL": redis_url, "SANDBOX_KEY_PREFIX": "cli-test:"}
    handed: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(
        services.os, "execve", lambda _path, argv, child_env: handed.append((argv, child_env))
    )

    def relay_sandbox(*args: str):
        handed.clear()
        assert CliRunner().invoke(services.sandbox, list(args), env=env).exit_code == 0
        [(argv, child_env)] = handed
        assert argv[1:3] == ["-m", "sandbox"] and child_env["SANDBOX_REDIS_URL"] == redis_url
        return CliRunner().invoke(sandbox_cli, argv[3:], env=child_env)

    created = relay_sandbox("orgs", "create", "finance")
    assert created.exit_code == 0, created.output
    assert re.search(r"^api key\s+ovt_test_\S+$", created.stdout, re.M)
    assert re.search(r"^webhook secret\s+whsec_\S+$", created.stdout, re.M)
    listed = relay_sandbox("orgs", "list")
    assert "finance" in listed.stdout and "ovt_test_" not in listed.stdout


def test_sandbox_server_stops_promptly_on_sigterm(redis_url):
    from app.cli.devstack import free_port, wait_until_up

    port = free_port()
    env = {**os.environ, "SANDBOX_REDIS_URL": redis_url, "SANDBOX_KEY_PREFIX": "sigterm-test:"}
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", processes=[server])
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=120) == 0, "a clean exit, not a deadlock waiting for the kill"
    finally:
        server.kill()
        server.wait()


def test_relay_dev_explains_a_busy_port():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = relay("dev", "--port", str(port), "--exit-after-demo", env=dict(os.environ))
    assert done.returncode != 0 and f"port {port} is already in use" in done.stderr


def _processes_of_session(session: int) -> dict[int, str]:
    """Live processes (not zombies) of a session, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (
                os.getsid(int(entry.name)) != session
                or " Z " in (entry / "stat").read_text().split(")", 1)[1][:4]
            ):
                continue
            found[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            )
        except (OSError, IndexError):
            continue
    return found
