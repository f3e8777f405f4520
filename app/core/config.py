"""Relay settings: every knob has a documented default and a RELAY_* environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class RelayConfig:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """App data and RQ queues. Use AOF persistence and maxmemory-policy noeviction in production. With
    RELAY_REDIS_SENTINELS, only its database number (and nothing else) is read."""
    redis_sentinels: str = ""
    """host:port,... of Redis Sentinels: every process then asks them for the primary of REDIS_MASTER_NAME, and
    again after a failover. Empty: RELAY_REDIS_URL names the one server."""
    redis_master_name: str = "relay"
    redis_password: str = ""
    """The Redis servers' password, with sentinels (in RELAY_REDIS_URL otherwise)."""
    redis_sentinel_password: str = ""
    redis_failover_seconds: float = 30.0
    """How long a Redis call keeps retrying, with backoff, while the primary is unreachable or was just
    replaced: longer than Sentinel takes to notice and fail over (down-after-milliseconds plus the election)."""
    redis_min_replicas: int = 0
    """Webhook intake, the Slack acknowledgement and submit answer 2xx only once this many replicas hold their
    write (Redis WAIT); otherwise 503 with Retry-After. 0: a single server."""
    redis_replica_wait_ms: int = 1000
    """How long such a write waits for its replicas."""
    key_prefix: str = "relay:"
    public_url: str = "http://127.0.0.1:8080"
    """How the outside world (the API's webhooks, Zapier, email readers) reaches this relay."""
    secret_key: str = ""
    """Signs webhook and file tokens. Empty: a random key kept in Redis (fine for one installation)."""
    encryption_keys: str = ""
    """Comma-separated Fernet keys for secrets at rest; the first encrypts, all decrypt (rotation)."""

    upstream_timeout_seconds: float = 30.0
    upstream_retries: int = 4
    """Attempts after the first on connection errors, 429 and 5xx, with exponential backoff and jitter."""
    upstream_backoff_seconds: float = 0.5
    upstream_backoff_cap_seconds: float = 10.0

    submit_retry_intervals: tuple[float, ...] = (
        2,
        5,
        10,
        30,
        60,
        120,
        300,
        300,
        300,
        600,
        600,
        900,
        900,
    )
    """When the API is down at submit time: waits between background attempts (about 70 minutes)."""
    idempotency_ttl_seconds: int = 86_400
    """How long an Idempotency-Key and its first answer are kept: 24 h."""
    webhook_dedupe_ttl_seconds: int = 172_800
    """How long a webhook-id is remembered to drop redeliveries: 48 h (keep it at least 24 h: the API retries
    a webhook for about 27 h)."""
    max_wait_seconds: int = 25

    reconcile_interval_seconds: int = 30
    """How often the scheduler enqueues the reconciler."""
    reconcile_quiet_seconds: float = 120.0
    """A task with no news for this long is polled; an ended task whose follow-ups (deliveries, hooks) were not
    marked done this long after its end has them run again."""
    poll_first_seconds: float = 3.0
    """The reconciler's first gap between polls of a quiet task; each next one doubles (app.domain.polling)."""
    poll_cap_seconds: float = 300.0
    poll_overdue_seconds: float = 30.0
    """The longest gap for a task that has run 1.5 times as long as its kind usually does for the tenant."""
    poll_budget_share: float = 0.10
    """The share of the API's rate limit a tenant's polls (the reconciler's and refreshes) may spend."""
    upstream_rate_limit_per_minute: int = 600
    """The API's rate limit per key (the contract's default)."""
    batch_max_concurrency: int = 16
    """The most batch rows of one tenant in the API at once; the feed starts at 2 and adapts below this."""
    batch_claim_stale_seconds: float = 120.0
    """A batch row claimed this long ago whose task does not exist lost its worker: the reconciler starts it."""
    batch_render_seconds: float = 10.0
    """How long rendering one batch's prompts from its template may take (in a process of its own, killed
    past it): the row it stopped at is refused, and the batch with it."""
    batch_render_memory_mb: int = 512
    """How much memory rendering one batch's prompts may take on top of the interpreter's."""
    batch_renders_at_once: int = 2
    """How many batches one web process renders at once; one more answers 503 with Retry-After at once."""
    batch_max_prompt_chars: int = 20_000_000
    """The most characters one batch's rendered prompts may hold together (each is at most 20,000)."""
    poll_give_up_seconds: float = 1800.0

    task_retention_seconds: float = 30 * 86_400.0
    """Finished tasks, with their deliveries and their events, are removed this long after they ended (the
    API keeps a run 30 days after its last task). Records stay; their usage stays in the daily rows."""
    dead_letter_retention_seconds: float = 30 * 86_400.0
    """A dead delivery leaves the dead-letter list (with a log line) this long after it died."""
    usage_retention_seconds: float = 396 * 86_400.0
    """Daily usage rows (credits, tasks, agent time per tenant and record) are kept 13 months."""
    audit_retention_seconds: float = 396 * 86_400.0
    """Audit log entries (who changed what, when, from where) are kept 13 months, then trimmed by the sweep."""
    job_result_ttl_seconds: int = 3600
    """How long RQ keeps a finished job's result (the relay's own records hold the outcomes)."""
    job_failure_ttl_seconds: int = 7 * 86_400
    """How long RQ keeps a failed job in its failed registry, for `rq requeue` or a look in rq-dashboard."""
    stream_retention_seconds: float = 7 * 86_400.0
    """Intake and delivery-lane entries still there after this long (their work failed for good and waits in
    RQ's failed registry or the dead letters) are dropped, with a log line."""
    consumer_idle_seconds: float = 3600.0
    """A stream consumer (one per worker process that ever ran) idle this long with nothing pending is removed."""
    retention_sweep_seconds: int = 60
    """How often the scheduler runs the retention sweep (in batches, from time-ordered indexes)."""
    archive_dir: str = ""
    """When set, each finished task's final record is appended to ARCHIVE_DIR/tasks-YYYY-MM-DD.jsonl (the day
    it ended) before the sweep removes it. Empty: off."""

    worker_lease_seconds: int = 60
    """A running job's lease: a worker that dies mid-job has its job retried about this long after. A
    submission's hand-over to the API is held with a lease as long, so one a killed process was making is
    taken up again after it too."""
    worker_maintenance_seconds: int = 30
    """How often a worker looks for jobs abandoned by dead workers (RQ's maintenance)."""
    intake_reclaim_seconds: int = 30
    """A webhook or command a worker's intake lane took from the intake stream and has not finished this long
    after (its worker died, or Redis lost its RQ job in a restart) is taken up by another worker."""
    intake_threads: int = 4
    """Webhooks each worker that serves the events queue applies at once (its intake lane's threads)."""
    outbound_allow: str = ""
    """Hosts and CIDR ranges user-supplied URLs may reach although private (e.g. 127.0.0.0/8 in development)."""
    outbound_ca_file: str = ""
    """A PEM file of certificate authorities trusted on outbound HTTPS besides certifi's (a private MinIO, a
    TLS-inspecting proxy): used by every destination, the platform SDKs (Dropbox, msal, boto3) included."""
    files_link_ttl_seconds: int = 7 * 86_400
    """Life of /files/{token} links in emails and messages (each use redirects to a fresh download)."""
    delivery_max_attempts: int = 8
    delivery_backoff_seconds: float = 5.0
    delivery_backoff_cap_seconds: float = 3600.0
    delivery_throttle_seconds: float = 6 * 3600.0
    """How long after it was planned a delivery a platform throttles (a 429, a pace slot far off) is retried
    without spending an attempt; after that, each throttle costs one as any other retry."""
    delivery_threads: int = 8
    """Deliveries each worker runs at once (its delivery lane's threads; they mostly wait on the network)."""
    delivery_recheck_seconds: float = 120.0
    """A delivery not done this long after its job was due is looked at by the reconciler (a job lost
    between Redis and a worker is queued again)."""
    folder_roots: str = "var/deliveries"
    """Comma-separated directories the folder destination may write under. Each tenant writes in a folder of
    its own, named by its tenant id, under the first (unless RELAY_FOLDER_TENANT_ROOTS maps it elsewhere)."""
    folder_tenant_roots: str = ""
    """Comma-separated ``tenant_id=directory``: the tenant's folder deliveries go there instead (a relative
    directory is under the first folder root; each must lie within one of RELAY_FOLDER_ROOTS)."""
    slack_api_url: str = "https://slack.com/api/"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"
    slack_signing_secret: str = ""
    """From the Slack app's Basic Information page: verifies /slack/commands requests."""
    slack_client_id: str = ""
    slack_client_secret: str = ""
    """The Slack app's OAuth credentials, for installs through /slack/install."""
    slack_bot_token: str = ""
    slack_tenant_id: str = ""
    """Single-workspace mode, without the install flow: this bot token answers for this tenant."""
    slack_files_per_minute: float = 100.0
    """Slack's Tier 4, the limit of files.getUploadURLExternal and files.completeUploadExternal per
    workspace; every worker together keeps under it."""
    slack_messages_per_second: float = 1.0
    """Slack's limit of messages a second per channel (chat.postMessage; a shared file posts one)."""
    slack_progress_seconds: float = 20.0
    """How often a running /overten job's progress is checked (at most 2 progress posts per job)."""
    drive_api_url: str = "https://www.googleapis.com"
    drive_token_url: str = "https://oauth2.googleapis.com/token"
    """Google's token endpoint, for Drive, Sheets and email's XOAUTH2 sign-in to Gmail."""
    google_token_uris: str = ""
    """Comma-separated token endpoints, besides Google's own and DRIVE_TOKEN_URL, that the ``token_uri`` of a
    tenant's Google credentials may name (e.g. a private Google Cloud endpoint). Empty: Google's only."""
    hubspot_api_url: str = "https://api.hubapi.com"
    hubspot_calls_per_window: int = 100
    """Calls HubSpot lets an account make in each burst window: 100 for private apps on Free and Starter (190
    on Professional and Enterprise, 110 for a public app's). The relay keeps each token's calls under 90% of it,
    across workers, leaving room for the account's other integrations."""
    hubspot_window_seconds: float = 10.0
    """HubSpot's burst window (tests shorten it together with the fake's)."""
    hubspot_timeout_seconds: float = 30.0
    """Longest wait for HubSpot to answer a call (a file upload gets ten times as long)."""
    airtable_api_url: str = "https://api.airtable.com"
    airtable_backoff_seconds: float = 30.0
    """Quiet after Airtable answers 429, as Airtable asks (tests shorten it)."""
    airtable_requests_per_second: float = 5.0
    """Airtable's limit per base, from all clients; the relay's workers together keep under it."""
    airtable_token_requests_per_second: float = 50.0
    """Airtable's limit per personal access token, across its bases."""
    airtable_private_attachments: bool = False
    """Attach files by URL even when RELAY_PUBLIC_URL is a private address: only for an Airtable that can
    reach it (a test's fake). Airtable itself fetches from the internet."""
    sheets_api_url: str = "https://sheets.googleapis.com/"
    sheets_reads_per_window: int = 60
    """Google Sheets' read quota per user (a service account is one user) per window: the relay paces the
    reads of each credential to it across every worker (a little under it, for margin)."""
    sheets_writes_per_window: int = 60
    """Google Sheets' write quota per user per window, paced like the reads and apart from them."""
    sheets_quota_window_seconds: float = 60.0
    """The window Sheets counts its quotas in (a minute); also how long a write-back waits after a 429,
    which says no Retry-After. Tests shorten it together with their fake's."""
    graph_api_url: str = "https://graph.microsoft.com/v1.0"
    graph_login_url: str = "https://login.microsoftonline.com"
    """Microsoft Entra's sign-in host, for OneDrive and SharePoint's app-only tokens and email's XOAUTH2 sign-in
    to Microsoft 365 (another cloud: e.g.
    https://login.microsoftonline.us with https://graph.microsoft.us/v1.0)."""
    graph_upload_busy_seconds: float = 30.0
    """How long a OneDrive/SharePoint delivery waits, without spending an attempt, before it asks again for an
    upload session when Graph answers that another session for the same file is open (409 nameAlreadyExists
    in OneDrive for Business, whatever the conflict policy; an idle session closes within 15 minutes)."""
    dropbox_api_url: str = "https://api.dropboxapi.com"
    dropbox_content_url: str = "https://content.dropboxapi.com"
    """Dropbox's RPC and content hosts (the SDK speaks HTTPS only)."""
    record_link_ttl_seconds: int = 30 * 86_400
    """Life of the /files/{token} link written back to a CRM record or a row (each use redirects to a fresh
    download); past the task's retention the link finds no document either."""
    email_attach_max_bytes: int = 10 * 1024 * 1024
    """Larger files are sent as a link instead of an attachment (and so is a file that would make the message
    larger than the SMTP server's announced SIZE limit)."""
    email_deferred_retry_seconds: float = 300.0
    """Wait before trying again when an SMTP server defers a recipient (a 4xx at RCPT): greylisting servers
    accept only a retry that comes after their delay, 5 minutes by default in Postgrey. When Microsoft 365
    refuses a connection beyond its 3 per mailbox (432 4.3.2), the wait is this or a minute, the shorter, and
    costs no attempt."""
    metrics_dir: str = "var/metrics"
    """Where the web and worker processes of this host write Prometheus metrics for /metrics to add up
    (prometheus_client's multiprocess mode; PROMETHEUS_MULTIPROC_DIR wins when set). Empty: per process."""
    rate_limit: str = "600 per minute;50 per second"
    """Per relay API key on /v1 (flask-limiter syntax, counted in Redis across processes). Empty: no limit."""
    admin_token: str = ""
    """Signs in to /dashboard and /dashboard/rq (32 characters or more). Empty: the dashboard is off.
    Replacing it ends every dashboard session."""
    admin_session_seconds: int = 12 * 3600
    """How long a sign-in lasts, a person's or the admin token's (signing out, a role removed, a change of the
    person's groups, or replacing the admin token or the identity provider ends it sooner)."""
    oidc_issuer: str = ""
    """The identity provider people sign in with (OpenID Connect), e.g. https://login.example.com/realms/ops:
    its /.well-known/openid-configuration is read from there. Empty: only the admin token signs in."""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    """Relay's client at the identity provider (a confidential client; its redirect URI is
    RELAY_PUBLIC_URL + /sign-in/oidc/callback, which `relay people provider` prints)."""
    oidc_scopes: str = "openid email profile groups"
    """Scopes asked for at sign-in, space-separated; the group claim must come back in the ID token (some
    providers name its scope otherwise, or need none: then leave ``groups`` out)."""
    oidc_group_claim: str = "groups"
    """The ID-token claim that lists the person's groups (a list of strings, or one string)."""
    oidc_roles: str = ""
    """Roles from groups: ``GROUP=ROLE`` entries separated by ``;`` (or new lines), ROLE being ``operator``
    (every tenant, and the dashboard) or ``TENANT:viewer``, ``TENANT:member``, ``TENANT:admin`` (TENANT: a
    tenant's id or name); e.g.
    ``relay-operators=operator; acme-admins=acme:admin; acme=acme:viewer``. A group is everything before the
    last ``=`` (so a DN such as ``cn=ops,dc=example,dc=org=operator`` works). Roles given with `relay people
    grant` add to these."""
    oidc_recheck_seconds: int = 3600
    """A person's sign-in older than this is sent through the identity provider again at their next page
    (seamless while their session there lives): a person the provider no longer knows is signed out, and
    changed groups change their roles. 0: only at sign-in."""
    oidc_timeout_seconds: float = 10.0
    """How long Relay waits on the identity provider (discovery, keys, the code exchange)."""
    admin_login_limit: str = "10 per minute;50 per hour"
    """Failed dashboard sign-ins each client address may make (flask-limiter syntax)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> RelayConfig:
        env = os.environ if environ is None else environ
        types = get_type_hints(
            cls
        )  # the annotations are strings (from __future__ import annotations)
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(f"RELAY_{item.name.upper()}")
            if raw is None:
                continue
            try:
                values[item.name] = _parse(types[item.name], raw)
            except ValueError:
                raise ValueError(
                    f"RELAY_{item.name.upper()}={raw!r} is not {_what(types[item.name])}"
                ) from None
        return replace(cls(**values), **overrides)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces this config in a child process (worker, scheduler)."""
        env = {}
        for item in fields(self):
            value = getattr(self, item.name)
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            env[f"RELAY_{item.name.upper()}"] = text
        return env


def _parse(kind: Any, raw: str) -> Any:
    """A setting's text as its field's type: str, int, float, bool (true/false, 1/0), or a comma-separated
    tuple of one of them."""
    if kind is bool:
        flag = {"true": True, "1": True, "false": False, "0": False}.get(raw.strip().lower())
        if flag is None:
            raise ValueError(raw)
        return flag
    if get_origin(kind) is tuple:
        item = get_args(kind)[0]
        return tuple(item(part) for part in raw.split(",") if part.strip())
    return kind(raw)


def _what(kind: Any) -> str:
    if get_origin(kind) is tuple:
        return f"a comma-separated list of {get_args(kind)[0].__name__} values"
    return {int: "a whole number", float: "a number", bool: "true or false"}.get(
        kind, kind.__name__
    )
