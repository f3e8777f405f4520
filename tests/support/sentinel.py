"""A real Redis Sentinel group on loopback for one test: a primary, its replicas and three sentinels, each its
own `redis-server` process (Debian's, `--sentinel` mode for the sentinels), on ports of their own (never
6379). Sentinel's timings are shortened so that a failover takes seconds, not the default half minute."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.client import PubSub
from redis.exceptions import RedisError

from app.cli.devstack import free_port
from tests.support import tools

MASTER = "relay"
# Sentinel names a server down when it has not answered a ping for this long. A newly promoted primary on a
# busy machine went unanswered for just over a second and was failed over again at 1000: a fault nobody made.
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 3000


@dataclass
class Node:
    name: str
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    def client(self, **kwargs) -> Redis:
        return Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2, **kwargs
        )

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except (RedisError, OSError):
            return False


@dataclass
class SentinelGroup:
    root: Path
    replicas: int = 2
    sentinels: int = 3
    servers: list[Node] = field(default_factory=list)
    watchers: list[Node] = field(default_factory=list)
    binary: str = ""

    @property
    def sentinel_hosts(self) -> str:
        """RELAY_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.watchers)

    def start(self) -> SentinelGroup:
        self.binary = tools.require("redis-server")
        primary = self._server("primary")
        for n in range(self.replicas):
            self._server(f"replica-{n}", replica_of=primary.port)
        for n in range(self.sentinels):
            self._sentinel(f"sentinel-{n}", primary.port)
        self._wait(
            lambda: self._replicas_online(primary) == self.replicas, "the replicas to catch up"
        )
        self._wait(
            lambda: all(self._sentinels_known(watcher) for watcher in self.watchers),
            "every sentinel to see the others and the replicas",
        )
        return self

    def primary(self) -> Node:
        """The server the sentinels name as primary now."""
        _, port = (
            self.watchers[0].client(decode_responses=True).sentinel_get_master_addr_by_name(MASTER)
        )
        return next(node for node in self.servers if node.port == int(port))

    def wait_for_new_primary(self, old: Node, timeout: float = 300) -> Node:
        def elected():
            try:
                current = self.primary()
            except (RedisError, OSError, StopIteration):
                return None
            role = (
                current.client(decode_responses=True).info("replication")["role"]
                if current.up()
                else ""
            )
            return current if current.port != old.port and role == "master" else None

        return self._wait(elected, "the sentinels to promote a replica", timeout)

    def kill(self, node: Node) -> None:
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()

    def rejoin(self, node: Node) -> None:
        """Start a killed server again, as a replica of the primary now, and wait until it has caught up and
        every sentinel knows it: the group is whole again, ready for another fault."""
        primary, argv = self.primary(), list(node.process.args)
        if "--replicaof" in argv:
            del argv[argv.index("--replicaof") : argv.index("--replicaof") + 3]
        self._spawn(node, [*argv, "--replicaof", "127.0.0.1", str(primary.port)])
        # the primary of now, each time: should the sentinels fail over meanwhile, they reconfigure the node too
        self._wait(
            lambda: self._replicas_online(self.primary()) == self.replicas,
            f"{node.name} to catch up",
        )
        self._wait(
            lambda: all(self._sentinels_known(watcher) for watcher in self.watchers),
            "every sentinel to know the group whole again",
        )

    def pause(self, node: Node) -> None:
        """A hung primary: the process stops, its sockets stay open and take commands it does not answer."""
        assert node.process is not None
        node.process.send_signal(signal.SIGSTOP)
        # the signal is asynchronous: wait until it has stopped
        stat = Path(f"/proc/{node.process.pid}/stat")
        self._wait(
            lambda: stat.read_text().rpartition(")")[2].split()[0] == "T",
            f"{node.name} to stop",
            120,
        )

    def resume(self, node: Node) -> None:
        assert node.process is not None
        node.process.send_signal(signal.SIGCONT)

    def failover_events(self) -> list[PubSub]:
        """Subscriptions to each sentinel's `+switch-master` (take them before the fault)."""
        subscriptions = []
        for watcher in self.watchers:
            pubsub = watcher.client(decode_responses=True).pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe("+switch-master")
            subscriptions.append(pubsub)
        return subscriptions

    def wait_for_switch(self, events: list[PubSub], timeout: float = 300) -> None:
        """Until every sentinel has switched to the new primary: the failover is over."""
        deadline, waiting = time.monotonic() + timeout, list(events)
        while waiting and time.monotonic() < deadline:
            for pubsub in list(waiting):
                message = pubsub.get_message(timeout=0.1)
                if message and message["data"].split()[0] == MASTER:
                    pubsub.close()
                    waiting.remove(pubsub)
        if waiting:
            raise AssertionError(
                f"timed out: {len(waiting)} sentinel(s) never switched to the new primary"
            )

    def stop(self) -> None:
        for node in [*self.watchers, *self.servers]:
            if node.process and node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=10)

    # -- starting ----------------------------------------------------------------------------------

    def _server(self, name: str, replica_of: int | None = None) -> Node:
        node = Node(name, free_port(), self.root / name)
        node.directory.mkdir(parents=True)
        argv = [
            self.binary,
            "--port",
            str(node.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(node.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(node.directory / "redis.log"),
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(node, argv)
        self.servers.append(node)
        return node

    def _sentinel(self, name: str, primary_port: int) -> Node:
        node = Node(name, free_port(), self.root / name)
        node.directory.mkdir(parents=True)
        conf = node.directory / "sentinel.conf"
        conf.write_text(
            f"port {node.port}\nbind 127.0.0.1\ndir {node.directory}\n"
            f"logfile {node.directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 2\n"
        )
        self._spawn(node, [self.binary, str(conf), "--sentinel"])
        self.watchers.append(node)
        return node

    def _spawn(self, node: Node, argv: list[str]) -> None:
        node.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
        )
        self._wait(node.up, f"{node.name} to start", 300)

    def _replicas_online(self, primary: Node) -> int:
        info = primary.client(decode_responses=True).info("replication")
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave")
            and isinstance(value, dict)
            and value.get("state") == "online"
        )

    def _sentinels_known(self, watcher: Node) -> bool:
        master = watcher.client(decode_responses=True).sentinel_master(MASTER)
        return (
            int(master.get("num-other-sentinels", 0)) == self.sentinels - 1
            and int(master.get("num-slaves", 0)) == self.replicas
        )

    @staticmethod
    def _wait(condition, what: str, timeout: float = 300):
        """A generous deadline: Sentinel on a busy machine is slow, not broken."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = condition()
            except (RedisError, OSError):
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")
