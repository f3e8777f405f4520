"""Counting the round trips a process makes to one Redis database.

A round trip is one request written to Redis and its answer read: a command, a pipeline or a transaction.
redis-py writes each of those with one ``send_packed_command``, so that is what is counted, on connections to
the database given (the sandbox's database on the same server is not counted)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from redis.connection import AbstractConnection


class RoundTrips:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, db: int):
        self.count = 0
        self._counting = False
        self._lock = threading.Lock()
        send = AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            if self._counting and connection.db == db:
                with self._lock:
                    self.count += 1
            return send(connection, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Count the round trips made inside the block, by any thread of this process."""
        self._counting = True
        try:
            yield
        finally:
            self._counting = False
