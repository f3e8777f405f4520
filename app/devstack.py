"""Starts and stops the local stack of `relay dev`: a private Redis and the sandbox API in child processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .embedded_redis import EmbeddedRedis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up within {timeout:g} s")
        time.sleep(0.1)


class DevStack:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir.resolve()
        self.redis = EmbeddedRedis(self.run_dir / "redis")
        self._children: list[subprocess.Popen] = []

    def start_redis(self) -> str:
        if self.redis.running():  # left over from an earlier run that was killed: reuse it
            return self.redis.url
        return self.redis.start()

    def sandbox_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SANDBOX_REDIS_URL": self.redis.url,
                "SANDBOX_DATA_DIR": str(self.run_dir / "sandbox"), **extra}

    def start_sandbox(self, port: int, **env: str) -> str:
        log = (self.run_dir / "sandbox.log").open("ab")
        child = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--port", str(port)],
                                 env=self.sandbox_env(**env), stdout=log, stderr=log)
        self._children.append(child)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/healthz")
        return url

    def create_sandbox_org(self, name: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "sandbox", "orgs", "create", name, "--json"],
                             env=self.sandbox_env(), check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    def stop(self) -> None:
        for child in reversed(self._children):
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        self._children.clear()
        self.redis.stop()
