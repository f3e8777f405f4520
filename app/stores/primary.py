"""The relay's Redis primary as the stores share it: writes of several stores sent in one round trip,
replication fences (RELAY_REDIS_MIN_REPLICAS) and group-committed scripts."""

from __future__ import annotations

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from app.core.group_commit import GroupCommit
from app.core.storage import NotReplicated


def primary_id(redis: Redis) -> str:
    """The replication id of the server answering: a replica promoted by a failover starts a new one."""
    return str(redis.info("replication")["master_replid"])


def wait_for_replicas(
    redis: Redis, fence_key: str, replicas: int, timeout_ms: int, primary: str
) -> None:
    """Return once ``replicas`` replicas hold every write the primary ``primary`` (its primary_id, taken before
    the writes) took so far, else raise NotReplicated.

    Redis's WAIT counts the writes of the connection it is sent on, and a pool hands out several; but the
    primary replicates its writes in one ordered stream, so a fence written and waited for on one connection
    (one pipeline) covers every write made before it on that server, on any connection. Only on that server:
    when a failover came between the writes and the fence, the fence lands on the new primary, which may
    never have had them, so a changed primary is not replicated either."""
    pipe = redis.pipeline(transaction=False)
    pipe.incr(fence_key)
    pipe.info("replication")
    pipe.wait(replicas, timeout_ms)
    _, info, confirmed = pipe.execute()
    if info["master_replid"] != primary:
        raise NotReplicated("the primary changed (a failover) while the request was being stored")
    if confirmed < replicas:
        raise NotReplicated(
            f"{confirmed} of {replicas} replica(s) confirmed the write within {timeout_ms} ms"
        )


def run_scripts(
    redis: Redis,
    script: Script,
    calls: list[tuple[list[str], list]],
    replicas: int = 0,
    timeout_ms: int = 0,
) -> list[object]:
    """Run ``script`` once per (keys, args) in one pipeline, with ``replicas``, then WAIT for that many replicas
    on the same connection: WAIT then counts exactly these writes, and a failover in between makes redis-py
    send them all again, to the new primary. One result per call, in order: its reply, or its exception
    (NotReplicated for each when too few replicas confirmed)."""
    results: list[object] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        pipe = redis.pipeline(transaction=False)
        for i in todo:
            pipe.evalsha(script.sha, len(calls[i][0]), *calls[i][0], *calls[i][1])
        if replicas > 0:
            pipe.wait(replicas, timeout_ms)
        replies = pipe.execute(raise_on_error=False)
        for i, reply in zip(todo, replies, strict=False):
            results[i] = reply
        confirmed = replies[-1] if replicas > 0 else 0
        todo = [i for i in todo if isinstance(results[i], NoScriptError)]
        if not todo:
            break
        # the server had no copy of it (a failover, a restart): sent again
        redis.script_load(script.script)
    if replicas > 0:
        if isinstance(confirmed, Exception):
            return [confirmed] * len(calls)
        if confirmed < replicas:
            short = NotReplicated(
                f"{confirmed} of {replicas} replica(s) confirmed the write within {timeout_ms} ms"
            )
            return [short if not isinstance(r, Exception) else r for r in results]
    return results


def queue_script(pipe, script: Script, keys: list[str], args: list) -> None:
    """Queue ``script`` on ``pipe`` with its source (EVAL): a script queued by its hash makes redis-py
    ask the server first whether it has it (SCRIPT EXISTS), a round trip before every such pipeline.
    The server caches it by hash either way."""
    pipe.eval(script.script, len(keys), *keys, *args)


class Primary:
    def __init__(self, redis: Redis, prefix: str, min_replicas: int = 0, replica_wait_ms: int = 0):
        self._redis, self._prefix = redis, prefix
        self._min_replicas, self._wait_ms = min_replicas, replica_wait_ms
        self._batches: dict[str, GroupCommit] = {}

    def pipeline(self, transaction: bool = True):
        """Writes of several stores queued together and sent in one round trip (in MULTI/EXEC unless
        ``transaction`` is False): each store's methods that take ``pipe`` queue theirs on it."""
        return self._redis.pipeline(transaction=transaction)

    def check_writable(self) -> None:
        """Raise the RedisError of a Redis that cannot take a write (a full or read-only one still
        answers PING)."""
        self._redis.set(self._prefix + "readyz", "1", ex=60)

    def mark(self) -> str:
        """Taken before the writes that ``replicated`` will vouch for: which primary takes them (""
        when RELAY_REDIS_MIN_REPLICAS is 0, and nothing is asked)."""
        return primary_id(self._redis) if self._min_replicas > 0 else ""

    def replicated(self, mark: str) -> None:
        """With RELAY_REDIS_MIN_REPLICAS, return only once that many replicas hold every write made
        since ``mark``; raise NotReplicated (a 503) otherwise, also when a failover came in between.
        What an answer of 2xx promises the sender."""
        if self._min_replicas > 0:
            fence = self._prefix + "replication-fence"
            wait_for_replicas(self._redis, fence, self._min_replicas, self._wait_ms, mark)

    def run_replicated(self, name: str, source: str, keys: list[str], args: list) -> object:
        """A script whose write, with RELAY_REDIS_MIN_REPLICAS, is on that many replicas before this
        returns (else NotReplicated, a 503). Calls of the same script by the process's other threads
        meanwhile go in the same pipeline (app/core/group_commit.py)."""
        batch = self._batches.get(name)
        if batch is None:
            # registered once per name (registering hashes the script)
            script = self._redis.register_script(source)

            def send(calls: list) -> list:
                return run_scripts(self._redis, script, calls, self._min_replicas, self._wait_ms)

            # setdefault: one per name, whoever wins
            batch = self._batches.setdefault(name, GroupCommit(send))
        return batch.submit((keys, args))
