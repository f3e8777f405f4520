"""Everything a request handler or a job needs, built once per process from the config.

Web processes build it in create_app(); worker processes build it from the environment when their
first job runs. Tests install their own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis import Redis

from app.core import redis_connection
from app.core.config import RelayConfig
from app.core.crypto import SecretBox
from app.core.tokens import Tokens
from app.core.upstream import RetryPolicy, UpstreamClients
from app.stores.audit import AuditLog
from app.stores.batches import BatchStore
from app.stores.budgets import BudgetStore
from app.stores.deliveries import DeliveryStore
from app.stores.destinations import DestinationStore, HookStore
from app.stores.events import EventLog
from app.stores.idempotency import IdempotencyStore
from app.stores.installations import InstallationStore
from app.stores.intake_stream import IntakeStream
from app.stores.lane_stream import LaneStream
from app.stores.paces import PaceStore
from app.stores.people import PeopleStore
from app.stores.primary import Primary
from app.stores.queues import Queues
from app.stores.records import RecordStore
from app.stores.sign_ins import SignInStore
from app.stores.slack_sessions import SlackSessions
from app.stores.tasks import TaskStore
from app.stores.tenants import TenantStore
from app.stores.usage import UsageRows


@dataclass
class Context:
    """Wiring only: the parts a process is made of, each built once. Functions do not take all of it:
    each module says in a Protocol (its ``Needs``) which of these parts it uses."""

    config: RelayConfig
    redis: Redis
    """App data, decoded to str."""
    rq_redis: Redis
    """RQ's connection: raw bytes, as RQ requires."""
    box: SecretBox
    tokens: Tokens
    primary: Primary
    queues: Queues
    upstream: UpstreamClients
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
    intake: IntakeStream
    lane: LaneStream
    installations: InstallationStore
    slack_sessions: SlackSessions
    audit: AuditLog
    people: PeopleStore
    sign_ins: SignInStore
    secret: str = ""
    """Signs tokens and the dashboard's session cookie (RELAY_SECRET_KEY, else one kept in Redis)."""


def build_context(config: RelayConfig) -> Context:
    # a Redis that cannot be reached fails a call in seconds (503, a back-off), never hangs a request
    redis = redis_connection.connect(config, decode=True, socket_timeout=30)
    rq_redis = redis_connection.connect(config, decode=False)
    box = SecretBox(config.encryption_keys)
    prefix = config.key_prefix
    secret = config.secret_key or _stored_secret(redis, prefix + "secret")
    primary = Primary(redis, prefix, config.redis_min_replicas, config.redis_replica_wait_ms)
    tenants, records = TenantStore(redis, prefix, box), RecordStore(redis, prefix)
    events, usage = EventLog(redis, prefix), UsageRows(redis, prefix)
    tasks = TaskStore(redis, prefix, tenants, records, events, usage)
    retry = RetryPolicy(
        retries=config.upstream_retries,
        base_seconds=config.upstream_backoff_seconds,
        cap_seconds=config.upstream_backoff_cap_seconds,
    )
    return Context(
        config=config,
        redis=redis,
        rq_redis=rq_redis,
        box=box,
        tokens=Tokens(secret),
        primary=primary,
        queues=Queues(rq_redis, config, tasks),
        upstream=UpstreamClients(config.upstream_timeout_seconds, retry),
        tenants=tenants,
        records=records,
        tasks=tasks,
        events=events,
        idempotency=IdempotencyStore(redis, prefix, config.idempotency_ttl_seconds),
        destinations=DestinationStore(redis, prefix, box),
        hooks=HookStore(redis, prefix, box),
        deliveries=DeliveryStore(redis, prefix),
        paces=PaceStore(redis, prefix),
        usage=usage,
        batches=BatchStore(redis, prefix),
        budgets=BudgetStore(redis, prefix),
        intake=IntakeStream(redis, prefix, primary, config.webhook_dedupe_ttl_seconds),
        lane=LaneStream(redis, prefix),
        installations=InstallationStore(redis, prefix, box, config),
        slack_sessions=SlackSessions(redis, prefix),
        audit=AuditLog(redis, prefix),
        people=PeopleStore(redis, prefix),
        sign_ins=SignInStore(redis, prefix),
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
