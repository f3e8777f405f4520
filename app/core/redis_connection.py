"""Every process's connections to the relay's Redis: the one server of RELAY_REDIS_URL or, with
RELAY_REDIS_SENTINELS, whichever server the sentinels name primary, asked again after a failover.

redis-py's own retries cover a few seconds; Sentinel takes longer to notice a dead primary and promote a
replica (down-after-milliseconds, then the election), so Sentinel connections retry, with backoff and
jitter, for RELAY_REDIS_FAILOVER_SECONDS. A READONLY answer (the old primary, back as a replica) makes
redis-py ask the sentinels again, and the sentinels' own failover events close every connection still open to
the old primary (app.core.failover_watch). The clients of one process share one Sentinel manager and watch.
"""

from __future__ import annotations

import math
import threading
from urllib.parse import quote

from redis import Redis
from redis.backoff import EqualJitterBackoff
from redis.connection import parse_url
from redis.retry import Retry

from app.core.config import RelayConfig
from app.core.failover_watch import FailoverWatch, NewestConfigSentinel, WatchedSentinelPool

_BACKOFF_CAP = (
    1.0  # seconds between two tries at the most (EqualJitter: between half and all of it)
)


def connect(config: RelayConfig, *, decode: bool, socket_timeout: float | None = None) -> Redis:
    """A client of the primary. ``decode``: replies as str (app data), else bytes (RQ requires them)."""
    if not config.redis_sentinels:
        return Redis.from_url(
            config.redis_url,
            decode_responses=decode,
            socket_connect_timeout=5,
            socket_timeout=socket_timeout,
        )
    sentinel, watch = _sentinel(config)
    client = sentinel.master_for(
        config.redis_master_name,
        connection_pool_class=WatchedSentinelPool,
        decode_responses=decode,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
        password=config.redis_password or None,
        db=database(config),
        retry=failover_retry(config),
    )
    client.connection_pool.failover_watch = watch
    watch.add(client.connection_pool)
    return client


_managers: dict[tuple, tuple[NewestConfigSentinel, FailoverWatch]] = {}
_managers_lock = threading.Lock()


def _sentinel(config: RelayConfig) -> tuple[NewestConfigSentinel, FailoverWatch]:
    key = (tuple(sentinel_hosts(config)), config.redis_master_name, config.redis_sentinel_password)
    with _managers_lock:
        if key not in _managers:
            sentinel = NewestConfigSentinel(
                sentinel_hosts(config),
                sentinel_kwargs={
                    "password": config.redis_sentinel_password or None,
                    "socket_timeout": 2,
                    "socket_connect_timeout": 2,
                },
            )
            _managers[key] = sentinel, FailoverWatch(sentinel, config.redis_master_name)
        return _managers[key]


def failover_retry(config: RelayConfig) -> Retry:
    tries = math.ceil(config.redis_failover_seconds / (0.75 * _BACKOFF_CAP)) + 1
    return Retry(EqualJitterBackoff(cap=_BACKOFF_CAP, base=0.05), tries)


def sentinel_hosts(config: RelayConfig) -> list[tuple[str, int]]:
    hosts = []
    for item in config.redis_sentinels.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host or item.strip(), int(port or 26379)))
    return hosts


def database(config: RelayConfig) -> int:
    return int(parse_url(config.redis_url).get("db") or 0) if "://" in config.redis_url else 0


def url_for_libraries(config: RelayConfig) -> str:
    """The same Redis as a URL for the libraries that take one (Flask-Limiter's storage, rq-dashboard):
    ``redis+sentinel://`` naming the sentinels and the primary's name, or RELAY_REDIS_URL itself."""
    if not config.redis_sentinels:
        return config.redis_url
    password = (
        f":{quote(config.redis_sentinel_password, safe='')}@"
        if config.redis_sentinel_password
        else ""
    )
    hosts = ",".join(f"{host}:{port}" for host, port in sentinel_hosts(config))
    return f"redis+sentinel://{password}{hosts}/{config.redis_master_name}/{database(config)}"
