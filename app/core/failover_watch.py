"""Every connection of this process leaves the old primary the moment the sentinels give up on it.

redis-py asks the sentinels for the primary only when it opens a connection. A connection already open to a
primary that hung (`kill -STOP`, a stalled VM, a GC-paused container) keeps waiting on it; when that server
comes back after the failover, it still thinks itself primary for a moment and answers those waiting
commands before the sentinels demote it. Their writes vanish when it resyncs from the new primary, yet each
client saw "OK" (Redis's own `min-replicas-to-write` does not cover this: the server refreshes its count of
good replicas once per second, after answering what had queued up).

So each process listens on every sentinel for the failover's two events, `+failover-state-reconf-slaves` (a
replica was promoted) and `+switch-master` (done), and then shuts the socket of every connection its pools
hold to the old primary: an idle one reconnects when next taken, and a command in flight gets "connection
closed", which redis-py retries on a new connection, to the primary the sentinels name. Whatever the old
server does with the command when it wakes, no client believes it.

The other half: after a failover the sentinels do not all know at once (the others learn from the leader's
hello messages, within seconds), and redis-py takes the first sentinel's answer, which can still name the old
server, now awake. `NewestConfigSentinel` asks them all and takes the newest configuration (its epoch).

Only sockets are shut down, never a connection object closed: it belongs to the thread using it (or to the
pool), which handles the error and reconnects; closing it from here would race with that thread.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import weakref

from redis.exceptions import ConnectionError, RedisError, TimeoutError
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

log = logging.getLogger(__name__)

CHANNELS = ("+failover-state-reconf-slaves", "+switch-master")
_LISTEN_SECONDS = (
    0.5  # how long one wait for a message lasts: the thread's stop is never later than this
)
_RETRY_SECONDS = 1.0  # after losing its sentinel, before a listener subscribes to it again


class FailoverWatch:
    """The listener for one primary's name on one set of sentinels, shared by the pools of a process."""

    def __init__(self, sentinel: Sentinel, service_name: str):
        self._sentinel, self._service = sentinel, service_name
        self._pools: weakref.WeakSet[SentinelConnectionPool] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pid = 0
        self._stopped = threading.Event()
        atexit.register(self.stop)

    def add(self, pool: SentinelConnectionPool) -> None:
        self._pools.add(pool)

    def ensure_running(self) -> None:
        """Start the listener in this process (again after a fork: threads do not cross one)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stopped = threading.Event()
            self._threads = [
                threading.Thread(
                    target=self._listen,
                    args=(client,),
                    daemon=True,
                    name=f"relay-failover-watch-{n}",
                )
                for n, client in enumerate(list(self._sentinel.sentinels))
            ]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()

    def stop(self) -> None:
        """Stop and join the listeners (at exit: no thread may be inside a Redis call as the interpreter ends)."""
        self._stopped.set()
        if self._pid != os.getpid():
            return
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    # several listeners may call it for one failover: harmless
    def cut(self, old: tuple[str, int]) -> None:
        """Leave the old primary: shut the socket of every connection to it, idle or in use. Only those: a
        command in flight on the new primary has run there, and cutting it would make redis-py send it again."""
        for pool in list(self._pools):
            # the pool's own lists (redis-py's maintenance handling uses them too), copied under its lock
            for connection in [*pool._get_free_connections(), *pool._get_in_use_connections()]:
                if (connection.host, int(connection.port)) != old:
                    continue
                connection.mark_for_reconnect()  # closed, not pooled again, when it is released
                sock = getattr(connection, "_sock", None)
                # its next read fails: "connection closed", retried by its thread
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        log.warning(
            "the sentinels failed over %r: connections to the old primary %s:%s closed",
            self._service,
            *old,
        )

    # -- the listening thread ------------------------------------------------------------------------

    def _listen(self, client) -> None:
        """One sentinel's events (each sentinel's thread: the first to hear of a failover acts on it)."""
        while not self._stopped.is_set():
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*CHANNELS)
                self._cut_if_moved()  # a failover while no sentinel was listened to
                while not self._stopped.is_set():
                    old = self._old_primary(pubsub.get_message(timeout=_LISTEN_SECONDS))
                    if old is not None:
                        self.cut(old)
            except (RedisError, OSError) as exc:
                log.info("failover watch: a sentinel is unreachable (%s), trying again", exc)
                self._stopped.wait(_RETRY_SECONDS)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    pubsub.close()

    def _old_primary(self, message: dict | None) -> tuple[str, int] | None:
        """The address the sentinels are leaving, when the event is about our primary's name."""
        if not message:
            return None
        channel, data = _text(message.get("channel")), _text(message.get("data")).split()
        # +switch-master: "<name> <old ip> <old port> <new ip> <new port>"; the other: "master <name> <ip> <port>"
        at = 0 if channel == "+switch-master" else 1
        if len(data) < at + 3 or data[at] != self._service:
            return None
        return data[at + 1], int(data[at + 2])

    def _cut_if_moved(self) -> None:
        known = {pool.master_address for pool in list(self._pools)} - {None}
        if not known:
            return
        try:
            current = self._sentinel.discover_master(self._service)
        except RedisError:  # no sentinel names a healthy primary: a failover is under way
            return
        for old in known - {current}:
            self.cut(old)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class NewestConfigSentinel(Sentinel):
    """A Sentinel manager that names the primary of the newest configuration any sentinel holds."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        newest, errors = None, []
        for sentinel in self.sentinels:
            try:
                state = sentinel.sentinel_masters().get(service_name)
            except (ConnectionError, TimeoutError) as exc:
                errors.append(repr(exc))
                continue
            if (
                state
                and self.check_master_state(state, service_name)
                and (newest is None or state["config-epoch"] > newest["config-epoch"])
            ):
                newest = state
        if newest is None:
            raise MasterNotFoundError(f"No master found for {service_name!r}: {', '.join(errors)}")
        return newest["ip"], newest["port"]


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary that asks the sentinels where it is on every reconnect.

    redis-py 8 reconnects a connection dropped in the middle of a command (its retry, or `send_packed_command`)
    through `connect_check_health`, which reuses the last host and port: after a failover it went back to the
    old primary, so that a write retried after our cut reached it as soon as it woke (redis/redis-py#3874,
    #3560)."""

    def _connect_retry(self) -> None:
        if self._sock or not self.connection_pool.is_master:
            return super()._connect_retry()
        return self.connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


class WatchedSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, with connections that follow the primary and its process's failover watch
    listening."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs):
        kwargs.setdefault("connection_class", PrimaryConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)

    failover_watch: FailoverWatch | None = None

    def get_connection(self, *args, **kwargs):
        if self.failover_watch is not None:
            self.failover_watch.ensure_running()
        return super().get_connection(*args, **kwargs)
