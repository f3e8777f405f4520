"""Starts and stops the local stack of `relay dev`: a private Redis, the sandbox, the relay's web
service, a worker and the scheduler, each in a child process with its log under the run directory."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.cli.embedded_redis import EmbeddedRedis
from app.core.crypto import SecretBox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_up(url: str, timeout: float = 300.0, processes: list[subprocess.Popen] = ()) -> None:
    """Wait until ``url`` answers. A start that is slow because the machine is busy is not a failure, so the
    deadline is long; a process of ``processes`` that exits meanwhile is, at once."""
    deadline = time.monotonic() + timeout
    # one client: each new one builds a TLS context (~60 ms of CPU)
    with httpx.Client(timeout=5) as client:
        while not _answers(client, url):
            if exited := [p for p in processes if p.poll() is not None]:
                raise RuntimeError(
                    f"{url} never came up: {' '.join(map(str, exited[0].args))} exited with "
                    f"status {exited[0].returncode}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout:g} s")
            time.sleep(0.1)


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code < 500
    except httpx.HTTPError:
        return False


class DevStack:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir.resolve()
        self.redis = EmbeddedRedis(self.run_dir / "redis")
        self._children: list[subprocess.Popen] = []

    def start_redis(self) -> str:
        if self.redis.running():  # left over from an earlier run that was killed: reuse it
            return self.redis.url
        return self.redis.start()

    def relay_secrets(self) -> dict[str, str]:
        """Encryption and signing keys for this run directory, made once and kept (mode 0600)."""
        path = self.run_dir / "secrets.json"
        if not path.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            keys = {
                "RELAY_ENCRYPTION_KEYS": SecretBox.new_key(),
                "RELAY_SECRET_KEY": os.urandom(24).hex(),
                "RELAY_ADMIN_TOKEN": secrets.token_urlsafe(32),
            }
            path.touch(mode=0o600)
            path.write_text(json.dumps(keys))
        return json.loads(path.read_text())

    def sandbox_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "SANDBOX_REDIS_URL": self.redis.url,
            "SANDBOX_DATA_DIR": str(self.run_dir / "sandbox"),
            **extra,
        }

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        """A child in a process group of its own: a Ctrl-C reaches `relay dev` alone, which then stops the
        children in order (workers before what they talk to), each with whatever it started (gunicorn's
        processes, RQ's scheduler)."""
        with (self.run_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", *argv], env=env, stdout=log, stderr=log, process_group=0
            )
        self._children.append(child)
        return child

    def start_sandbox(self, port: int, **env: str) -> str:
        sandbox = self.spawn(
            "sandbox", ["sandbox", "serve", "--port", str(port)], self.sandbox_env(**env)
        )
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/healthz", processes=[sandbox])
        return url

    def create_sandbox_org(self, name: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "sandbox", "orgs", "create", name, "--json"],
            env=self.sandbox_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)

    def start_relay(
        self,
        port: int,
        env: dict[str, str],
        workers: int = 1,
        scheduler: bool = True,
        timeout: float = 300.0,
    ) -> str:
        """The web service (gunicorn), ``workers`` workers with RQ's scheduler, and the cron scheduler."""
        web = self.spawn("web", ["app.cli", "web", "--port", str(port), "--workers", "2"], env)
        for n in range(workers):
            self.spawn("worker" if workers == 1 else f"worker-{n}", ["app.cli", "worker"], env)
        if scheduler:
            self.spawn("scheduler", ["app.cli", "scheduler"], env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/readyz", timeout=timeout, processes=[web])
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; see {self.run_dir}/web.log and worker.log") from None
        return url

    def stop(self, timeout: float = 10.0) -> None:
        stop_processes(self._children, timeout=timeout, groups=True)
        self._children.clear()
        self.redis.stop()


def stop_processes(
    children: list[subprocess.Popen], timeout: float = 15.0, groups: bool = False
) -> None:
    """SIGTERM every child (newest first, so workers stop before what they talk to), then wait; whatever
    has not exited by ``timeout`` is killed. ``groups``: each child leads a process group (spawned with
    process_group=0), and the whole group is signalled, so nothing it started is left behind."""

    def send(child: subprocess.Popen, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum) if groups else child.send_signal(signum)

    for child in reversed(children):
        if child.poll() is None:
            send(child, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            send(child, signal.SIGKILL)
            child.wait()
        if groups:
            # what the child started and left running (it has exited by now)
            send(child, signal.SIGKILL)
