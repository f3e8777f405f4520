"""`relay doctor`: is this installation safe to run? Configuration, Redis durability, the API, workers.

Each check says what it found and, when something is off, what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import RedisError

from app.core import redis_connection, secret_strength, storage
from app.core.config import RelayConfig
from app.core.crypto import MissingEncryptionKey, SecretBox
from app.core.upstream import UpstreamAuthError, UpstreamError
from app.stores import queues
from app.stores.context import Context, build_context

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    level: str
    check: str
    message: str


def run(config: RelayConfig) -> list[Finding]:
    findings = _config(config)
    redis = redis_connection.connect(
        replace(config, redis_failover_seconds=0), decode=True, socket_timeout=5
    )
    try:
        redis.ping()
    except RedisError as exc:
        return [*findings, Finding(FAIL, "redis", f"cannot reach {_where(config)}: {exc}")]
    findings += [
        Finding(OK, "redis", f"reachable at {_where(config)}"),
        *_durability(redis),
        _memory(redis),
    ]
    if any(f.check in ("encryption", "secrets") and f.level == FAIL for f in findings):
        return findings
    try:
        ctx = build_context(config)
        return findings + _workers(ctx) + _api(ctx)
    except RedisError as exc:
        kind = storage.trouble(exc) or "error"
        return [
            *findings,
            Finding(FAIL, "redis", storage.MESSAGES.get(kind, f"Redis refused: {exc}")),
        ]


def _config(config: RelayConfig) -> list[Finding]:
    found = []
    try:
        SecretBox(config.encryption_keys)
        count = len([k for k in config.encryption_keys.split(",") if k.strip()])
        found.append(Finding(OK, "encryption", f"{count} encryption key(s); the first encrypts"))
    except MissingEncryptionKey as exc:
        found.append(Finding(FAIL, "encryption", str(exc)))
    except ValueError:
        found.append(
            Finding(
                FAIL,
                "encryption",
                "RELAY_ENCRYPTION_KEYS holds a value that is not a Fernet key; "
                "make one with `relay secrets new-key`",
            )
        )
    found += [Finding(FAIL, "secrets", problem) for problem in secret_strength.problems(config)]
    if not config.secret_key:
        found.append(
            Finding(
                WARN,
                "secret key",
                "RELAY_SECRET_KEY is empty: a random one kept in Redis signs links; "
                "set it so links survive a Redis rebuild",
            )
        )
    host = urlsplit(config.public_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        found.append(
            Finding(
                WARN,
                "public url",
                f"RELAY_PUBLIC_URL is {config.public_url}: the API's webhooks, "
                "Zapier and Slack cannot reach a loopback address",
            )
        )
    else:
        found.append(Finding(OK, "public url", config.public_url))
    if bool(config.slack_client_id) != bool(config.slack_client_secret):
        found.append(
            Finding(WARN, "slack", "set both RELAY_SLACK_CLIENT_ID and RELAY_SLACK_CLIENT_SECRET")
        )
    if not config.admin_token and not config.oidc_issuer:
        found.append(
            Finding(
                WARN,
                "dashboard",
                "no one can sign in (/dashboard is off): set RELAY_OIDC_ISSUER and its client, "
                "or RELAY_ADMIN_TOKEN",
            )
        )
    if config.oidc_issuer:
        found.append(_identity_provider(config))
    return found


def _identity_provider(config: RelayConfig) -> Finding:
    """The identity provider answers discovery with the configured issuer, and the mapping reads."""
    from app.domain.people import mapping
    from app.web.oidc import IdentityProvider, SignInRefused, redirect_uri

    if not (config.oidc_client_id and config.oidc_client_secret):
        return Finding(FAIL, "sign-in", "set RELAY_OIDC_CLIENT_ID and RELAY_OIDC_CLIENT_SECRET")
    try:
        roles = mapping(config)
        IdentityProvider(config).load_server_metadata()
    except (ValueError, SignInRefused) as exc:
        return Finding(FAIL, "sign-in", str(exc))
    return Finding(
        OK,
        "sign-in",
        f"{config.oidc_issuer} answers; {len(roles.entries)} group mapping(s); redirect URI "
        f"{redirect_uri(config)}",
    )


def _durability(redis: Redis) -> list[Finding]:
    found = []
    try:
        aof = redis.info("persistence").get("aof_enabled")
        policy = redis.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except RedisError as exc:  # managed Redis often forbids CONFIG
        return [
            Finding(
                WARN,
                "redis persistence",
                f"could not read the settings ({exc}); make sure AOF is on "
                "and maxmemory-policy is noeviction",
            )
        ]
    if aof:
        found.append(Finding(OK, "redis persistence", "AOF is on"))
    else:
        found.append(
            Finding(
                WARN,
                "redis persistence",
                "AOF is off: an acknowledged webhook can be lost in a "
                "crash; set appendonly yes (appendfsync everysec)",
            )
        )
    if policy == "noeviction":
        found.append(Finding(OK, "redis eviction", "maxmemory-policy noeviction"))
    else:
        found.append(
            Finding(
                WARN,
                "redis eviction",
                f"maxmemory-policy is {policy}: Redis may drop tasks and "
                "queued jobs when full; set noeviction",
            )
        )
    return found


MEMORY_WARN_SHARE = 0.8


def _memory(redis: Redis) -> Finding:
    """How full Redis is: past maxmemory (noeviction) it refuses writes and the relay answers 503."""
    memory = redis.info("memory")
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if not limit:
        return Finding(
            OK,
            "redis memory",
            f"{_mib(used)} used, no maxmemory set (Redis may grow until the host "
            "runs out; set one with headroom, docs/operations.md)",
        )
    share = used / limit
    text = f"{_mib(used)} of maxmemory {_mib(limit)} used ({share:.0%})"
    if share >= MEMORY_WARN_SHARE:
        return Finding(
            WARN,
            "redis memory",
            f"{text}: at 100% writes are refused and the relay answers 503; "
            "raise maxmemory or shorten retention (docs/operations.md)",
        )
    return Finding(OK, "redis memory", text)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


def _workers(ctx: Context) -> list[Finding]:
    workers = ctx.queues.workers()
    waiting = {name: ctx.queues.get(name).count for name in queues.ALL}
    backlog = ", ".join(f"{name} {count}" for name, count in waiting.items())
    if not workers:
        return [
            Finding(
                FAIL, "workers", f"no worker is alive: start `relay worker` (queued: {backlog})"
            )
        ]
    return [Finding(OK, "workers", f"{len(workers)} alive (queued: {backlog})")]


def _api(ctx: Context) -> list[Finding]:
    tenants = ctx.tenants.list()
    if not tenants:
        return [Finding(WARN, "api", "no tenants yet: `relay tenants create`")]
    found = []
    for tenant in tenants:
        try:
            with ctx.upstream.once(tenant) as client:
                client.list_runs(limit=1)
            found.append(
                Finding(
                    OK, f"api ({tenant.name})", f"{tenant.upstream_url} accepts the tenant's key"
                )
            )
        except UpstreamAuthError:
            found.append(
                Finding(
                    FAIL,
                    f"api ({tenant.name})",
                    f"{tenant.upstream_url} refuses the tenant's API key",
                )
            )
        except UpstreamError as exc:
            found.append(
                Finding(FAIL, f"api ({tenant.name})", f"{tenant.upstream_url}: {exc.message}")
            )
    return found


def _where(config: RelayConfig) -> str:
    if config.redis_sentinels:
        return f"the primary {config.redis_master_name!r} of the sentinels {config.redis_sentinels}"
    return _safe(config.redis_url)


def _safe(url: str) -> str:
    """A Redis URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
