"""Logs as JSON lines, with the tenant, task, run and delivery a line is about, and secrets redacted.

Redaction is a last line of defence: code should not log secrets at all. It masks what looks like a
credential anywhere in a line (message, arguments, exception text): relay API keys, Slack tokens and
response_urls, webhook secrets, bearer tokens, Fernet ciphertexts, private keys, passwords in URLs, and the
tokens of bearer links in paths and queries (access logs: /files/<token>, /slack/install?link=<token>)."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "relay_log_context", default=None
)
CONTEXT_FIELDS = ("tenant", "task_id", "run_id", "delivery_id")

SECRET_PATTERNS = [
    re.compile(r"rly_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}"),  # relay API keys
    re.compile(r"xox[abposre]-[A-Za-z0-9-]{6,}"),  # Slack tokens
    re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"),  # webhook signing secrets
    re.compile(r"gAAAAA[A-Za-z0-9_=-]{20,}"),  # Fernet ciphertexts (sealed secrets)
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"',\s]{8,}"),
    # response_urls and incoming webhooks are credentials
    re.compile(r"https://hooks\.slack\.com/\S+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(
        r"(?i)((?:password|passwd|secret|client_secret|refresh_token|api_key)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\"'&,\s]{3,}"
    ),
    re.compile(r"(://[^:/@\s]+:)[^@/\s]+(@)"),  # user:password@ in URLs
    # bearer links: a path segment after /files/ or /webhooks/upstream/ (an access log's request line)
    re.compile(r"(/(?:files|webhooks/upstream)/)[^\s/?#\"']+"),
    # query values that are tokens: Slack's install link and OAuth code and state, signed URLs' signatures
    re.compile(
        r"(?i)([?&;](?:link|code|state|token|access_token|id_token|key|sig|signature|secret"
        r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential)=)"
        r"[^&;#\s\"']+"
    ),
    # any other signed token (itsdangerous: payload.signature or payload.time.signature), wherever it is
    re.compile(r"(?<![\w.-])\.?[\w-]{6,}\.(?:[\w-]{4,}\.)?[\w-]{27,}(?![\w-])"),
]


def _mask(match: re.Match) -> str:
    """Keep what a pattern captured around the secret (a "Bearer " prefix, the ":" and "@" of a URL)."""
    groups = match.groups()
    return (groups[0] if groups else "") + "[redacted]" + (groups[1] if len(groups) > 1 else "")


def redact(text: str) -> str:
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def current() -> dict[str, str]:
    return _CONTEXT.get() or {}


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Lines logged inside carry these fields (None values are left out)."""
    token = _CONTEXT.set({**current(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context for the rest of it (a web request, after authentication)."""
    _CONTEXT.set({**current(), **{k: v for k, v in fields.items() if v}})


def reset() -> None:
    """A new unit of work on a reused thread (each web request) starts with no fields."""
    _CONTEXT.set(None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(current())
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None):
                line[name] = str(getattr(record, name))
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure(level: str = "INFO", stream=None) -> None:
    """JSON lines on stdout for this process (web, worker, scheduler)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request's URL (signed download and upload links among them); deliveries and
    # upstream calls log their own outcome lines instead
    logging.getLogger("httpx").setLevel(logging.WARNING)


GUNICORN_LOGCONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "app.core.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}
