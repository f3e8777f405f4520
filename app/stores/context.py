"""Everything a request handler or a job needs, built once per process from the config.

Web processes build it in create_app(); worker processes build it from the environment when their
first job runs. Tests install their own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from redis import Redis
from rq import Queue

from app.core import redis_connection, storage
from app.core.config import RelayConfig
from app.core.crypto import SecretBox
from app.core.group_commit import GroupCommit
from app.core.tokens import Tokens
from app.core.upstream import RetryPolicy, UpstreamClient
from app.stores.batches import BatchStore
from app.stores.budgets import BudgetStore
from app.stores.deliveries import DeliveryStore
from app.stores.destinations import DestinationStore, HookStore
from app.stores.events import EventLog
from app.stores.idempotency import IdempotencyStore
from app.stores.paces import PaceStore
from app.stores.records import RecordStore
from app.stores.tasks import TaskStore
from app.stores.tenants import Tenant, TenantStore
from app.stores.usage import UsageRows


@dataclass
class Context:
    config: RelayConfig
    redis: Redis
    """App data, decoded to str."""
    rq_redis: Redis
    """RQ's connection: raw bytes, as RQ requires."""
    box: SecretBox
    tokens: Tokens
    tenants: TenantStore
    records: RecordStore
    tasks: TaskStore
    events: EventLog
    idempotency: IdempotencyStore
    destinations: DestinationStore
    hooks: HookStore
    deliveries: DeliveryStore
    paces: PaceStore
    usage: UsageRows
    batches: BatchStore
    budgets: BudgetStore
    secret: str = ""
    """Signs tokens and the dashboard's session cookie (RELAY_SECRET_KEY, else one kept in Redis)."""

    _queues: dict[str, Queue] = field(default_factory=dict)
    _batches: dict[str, GroupCommit] = field(default_factory=dict)

    def queue(self, name: str) -> Queue:
        # one Queue object per name: RQ caches the server's version on it (else an INFO per enqueue)
        if name not in self._queues:
            queue = Queue(name, connection=self.rq_redis)
            # what RQ's enqueue does every time
            self.rq_redis.sadd(queue.redis_queues_keys, queue.key)
            self._queues[name] = queue
        return self._queues[name]

    def upstream(self, tenant: Tenant) -> UpstreamClient:
        config = self.config
        retry = RetryPolicy(
            retries=config.upstream_retries,
            base_seconds=config.upstream_backoff_seconds,
            cap_seconds=config.upstream_backoff_cap_seconds,
        )
        return UpstreamClient(
            tenant.upstream_url,
            tenant.upstream_key,
            timeout=config.upstream_timeout_seconds,
            retry=retry,
        )

    def upstream_once(self, tenant: Tenant, timeout: float = 5.0) -> UpstreamClient:
        """A client that tries once, briefly: for reads on a person's request path."""
        return UpstreamClient(
            tenant.upstream_url, tenant.upstream_key, timeout=timeout, retry=RetryPolicy(retries=0)
        )

    def primary_mark(self) -> str:
        """Taken before the writes that ``replicated`` will vouch for: which primary takes them ("" when
        RELAY_REDIS_MIN_REPLICAS is 0, and nothing is asked)."""
        return storage.primary_id(self.redis) if self.config.redis_min_replicas > 0 else ""

    def replicated(self, mark: str) -> None:
        """With RELAY_REDIS_MIN_REPLICAS, return only once that many replicas hold every write made since
        ``mark`` (primary_mark); raise NotReplicated (a 503) otherwise, also when a failover came in between.
        What an answer of 2xx promises the sender."""
        if self.config.redis_min_replicas > 0:
            storage.wait_for_replicas(
                self.redis,
                self.key("replication-fence"),
                self.config.redis_min_replicas,
                self.config.redis_replica_wait_ms,
                mark,
            )

    def run_replicated(self, name: str, source: str, keys: list[str], args: list) -> object:
        """A registered script whose write, with RELAY_REDIS_MIN_REPLICAS, is on that many replicas before
        this returns (else NotReplicated, a 503). Calls of the same script by the process's other threads
        meanwhile go in the same pipeline (app/core/group_commit.py)."""
        batch = self._batches.get(name)
        if batch is None:
            # registered once per name (registering hashes the script)
            script, config = self.redis.register_script(source), self.config

            def send(calls: list) -> list:
                return storage.run_scripts(
                    self.redis,
                    script,
                    calls,
                    config.redis_min_replicas,
                    config.redis_replica_wait_ms,
                )

            # setdefault: one per name, whoever wins
            batch = self._batches.setdefault(name, GroupCommit(send))
        return batch.submit((keys, args))

    def pipeline(self, transaction: bool = True):
        """Writes of several stores queued together and sent in one round trip (in MULTI/EXEC unless
        ``transaction`` is False): each store's methods that take ``pipe`` queue theirs on it."""
        return self.redis.pipeline(transaction=transaction)

    def check_writable(self) -> None:
        """Raise the RedisError of a Redis that cannot take a write (a full or read-only one still answers
        PING)."""
        self.redis.set(self.key("readyz"), "1", ex=60)

    def key(self, *parts: str) -> str:
        return self.config.key_prefix + ":".join(parts)


def build_context(config: RelayConfig) -> Context:
    # a Redis that cannot be reached fails a call in seconds (503, a back-off), never hangs a request
    redis = redis_connection.connect(config, decode=True, socket_timeout=30)
    rq_redis = redis_connection.connect(config, decode=False)
    box = SecretBox(config.encryption_keys)
    prefix = config.key_prefix
    secret = config.secret_key or _stored_secret(redis, prefix + "secret")
    tenants, records = TenantStore(redis, prefix, box), RecordStore(redis, prefix)
    events, usage = EventLog(redis, prefix), UsageRows(redis, prefix)
    return Context(
        config=config,
        redis=redis,
        rq_redis=rq_redis,
        box=box,
        tokens=Tokens(secret),
        tenants=tenants,
        records=records,
        tasks=TaskStore(redis, prefix, tenants, records, events, usage),
        events=events,
        idempotency=IdempotencyStore(redis, prefix, config.idempotency_ttl_seconds),
        destinations=DestinationStore(redis, prefix, box),
        hooks=HookStore(redis, prefix, box),
        deliveries=DeliveryStore(redis, prefix),
        paces=PaceStore(redis, prefix),
        usage=usage,
        batches=BatchStore(redis, prefix),
        budgets=BudgetStore(redis, prefix),
        secret=secret,
    )


def _stored_secret(redis: Redis, key: str) -> str:
    redis.set(key, secrets.token_urlsafe(32), nx=True)
    return str(redis.get(key))


_current: Context | None = None


def install(context: Context) -> None:
    global _current
    _current = context


def current() -> Context:
    """This process's context (built from RELAY_* environment variables on first use)."""
    global _current
    if _current is None:
        _current = build_context(RelayConfig.from_env())
    return _current
