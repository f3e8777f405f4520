"""The SMTP session a delivery and a check share: a connection to the address the outbound policy checked,
TLS as configured (the tenant's own CA too), the sign-in (a password, or an OAuth token through ``XOAUTH2``),
and what the server's answers mean for a delivery: temporary (4xx) or not (5xx), in words that name the
server's codes and never repeat its text."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ..base import DeliveryError, Environment, Permanent, Retryable, Throttled
from . import oauth

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\b")
# Microsoft 365's answers once basic auth is off: "535 5.7.139 Authentication unsuccessful, basic
# authentication is disabled", or "550 5.7.30 Basic authentication is not supported for Client Submission"
_BASIC_AUTH_OFF = {"5.7.139", "5.7.30"}


def security(config: dict) -> str:
    return str(config.get("security") or "starttls")


def port(config: dict) -> int:
    return int(config.get("port") or 587)


def tls_context(config: dict, env: Environment) -> ssl.SSLContext:
    """The relay's authorities (certifi's and the operator's RELAY_OUTBOUND_CA_FILE, as for every destination;
    the system's when the relay gives none), and the tenant's own CA certificate if it gave one (``ca_pem``).
    A path on the worker (``ca_file``, before) is never opened: what it answered told whether a file exists."""
    if config.get("ca_file"):
        raise Permanent(
            "ca_file is not read any more: give the CA certificate's PEM text in ca_pem"
        )
    context = ssl.create_default_context(cafile=env.settings.get("ca_bundle"))
    if config.get("ca_pem"):
        try:
            context.load_verify_locations(cadata=config["ca_pem"])
        except (ssl.SSLError, ValueError):
            raise Permanent("ca_pem holds no certificate TLS can use") from None
    return context


class _Pinned:
    """Connects to ``address`` (the one the outbound policy checked) while the host's name stays the server's
    name for TLS (SNI and the certificate check, which smtplib takes from ``_host``)."""

    def __init__(self, name: str, address: str, **kwargs):
        self._address = address
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self._host = name

    def _get_socket(self, host, port, timeout):
        return super()._get_socket(self._address, port, timeout)  # type: ignore[misc]


class _PinnedSMTP(_Pinned, smtplib.SMTP):
    pass


class _PinnedSMTPSSL(_Pinned, smtplib.SMTP_SSL):
    pass


@contextmanager
def connected(config: dict, env: Environment, timeout: float = 60) -> Iterator[smtplib.SMTP]:
    """A session with the server, greeted, and in TLS when configured (not yet signed in)."""
    host = config["host"]
    # checked now, and the socket opened to this very address (no second lookup to rebind)
    address = env.settings["connect"](host, port(config))
    context = tls_context(config, env)
    smtp = (
        _PinnedSMTPSSL(host, address, context=context, timeout=timeout)
        if security(config) == "ssl"
        else _PinnedSMTP(host, address, timeout=timeout)
    )
    code, reply = smtp.connect(host, port(config))
    if code != 220:
        smtp.close()
        raise smtplib.SMTPConnectError(code, reply)
    with smtp:
        if security(config) == "starttls":
            smtp.starttls(context=context)
        smtp.ehlo_or_helo_if_needed()
        yield smtp


def sign_in(smtp: smtplib.SMTP, config: dict, env: Environment) -> str:
    """Sign in as configured; returns how, in words. With OAuth, a refused token kept from before is
    replaced by a fresh one, once (it may have been revoked, or have expired early)."""
    auth = config.get("auth") or "password"
    if auth == "password":
        if not config.get("username"):
            return "no sign-in (none is configured)"
        smtp.login(config["username"], config.get("password", ""))
        return f"signed in as {config['username']} with a password"
    offered = str(smtp.esmtp_features.get("auth", "")).upper().split()
    if "XOAUTH2" not in offered:
        raise Permanent(
            "the SMTP server does not offer XOAUTH2 sign-in: OAuth needs Microsoft 365 "
            "(smtp.office365.com) or Gmail (smtp.gmail.com)"
        )
    user = oauth.mailbox(config)
    try:
        _xoauth2(smtp, user, oauth.token(config, env))
    except smtplib.SMTPAuthenticationError as refused:
        try:
            _xoauth2(smtp, user, oauth.token(config, env, fresh=True))
        except smtplib.SMTPServerDisconnected:
            raise refused from None  # the server hung up after its refusal: that refusal is the answer
    return f"signed in as {user} with XOAUTH2"


def _xoauth2(smtp: smtplib.SMTP, user: str, access: str) -> None:
    # smtplib asks once for the initial response, and again for each challenge: Gmail's error comes as one,
    # answered with an empty line before the server says 535
    smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else oauth.xoauth2(user, access))


def size_limit(smtp: smtplib.SMTP) -> int | None:
    """The largest message the server takes, as its EHLO answer announces (RFC 1870); None when it
    announces none (or SIZE 0: no fixed limit)."""
    announced = str(smtp.esmtp_features.get("size", "")).strip()
    return int(announced) if announced.isdigit() and int(announced) > 0 else None


def explain(exc: Exception, config: dict, wait: float = 60.0) -> DeliveryError:
    """What an exception of an SMTP session means for the delivery, in words; ``wait``: before trying again
    when the server says how many connections a mailbox may have."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPResponseException) and _too_many_connections(exc):
        return Throttled(
            f"the SMTP server has too many connections for this mailbox at once "
            f"({exc.smtp_code}{said_code(exc.smtp_error)}; Microsoft 365 allows 3): waiting",
            retry_after=wait,
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _refused_sign_in(exc, config)
    if isinstance(exc, smtplib.SMTPResponseException) and _daily_limit(exc):
        return Permanent(
            f"the mailbox's daily sending limit is spent ({exc.smtp_code}{said_code(exc.smtp_error)}; "
            "Microsoft 365 allows 10,000 recipients a day): the server refuses its mail for up to a "
            "day; replay the delivery then"
        )
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 552:
        return Permanent(
            f"the SMTP server refused the message as too large (552{said_code(exc.smtp_error)})"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        kind = Retryable if 400 <= exc.smtp_code < 500 else Permanent
        code = enhanced(exc.smtp_error)
        return kind(f"the SMTP server answered {exc.smtp_code}{f' ({code})' if code else ''}")
    if isinstance(exc, ssl.SSLError):
        return Permanent(f"TLS with the SMTP server failed: {exc.reason}")
    if isinstance(exc, smtplib.SMTPException | OSError):
        return Retryable(f"the SMTP server could not be reached ({type(exc).__name__})")
    raise exc


def _too_many_connections(exc: smtplib.SMTPResponseException) -> bool:
    """Microsoft 365's 432 4.3.2 ("sender thread limit exceeded", "concurrent connection limit exceeded"): the
    mailbox's other connections must end first, so it is a wait, not a failed attempt."""
    return exc.smtp_code == 432 or enhanced(exc.smtp_error) == "4.3.2"


def _daily_limit(exc: smtplib.SMTPResponseException) -> bool:
    """Exchange Online's recipient rate limit: 554 5.2.0 with SubmissionQuotaExceededException (the name is
    read to tell it from other 5.2.0 answers, and never repeated)."""
    error = exc.smtp_error
    reply = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return enhanced(exc.smtp_error) == "5.2.0" and "SubmissionQuotaExceeded" in reply


def _refused_sign_in(exc: smtplib.SMTPAuthenticationError, config: dict) -> Permanent:
    code = enhanced(exc.smtp_error)
    said = f"{exc.smtp_code}{f' {code}' if code else ''}"
    if (config.get("auth") or "password") != "password":
        return Permanent(
            f"the SMTP server refused the XOAUTH2 sign-in as {oauth.mailbox(config)} ({said}): the "
            "app or account may not send as this mailbox, or SMTP AUTH is off for it"
        )
    if code in _BASIC_AUTH_OFF:
        return Permanent(
            f"the SMTP server refused the login ({said}): basic authentication (a password) is "
            "disabled for this mailbox; sign in with OAuth instead (auth oauth_microsoft for "
            "Microsoft 365, oauth_google for Gmail)"
        )
    return Permanent(f"the SMTP server refused the login ({said})")


def enhanced(reply: bytes | str) -> str:
    """The reply's enhanced status code (RFC 3463, ``5.7.1``), the server's own code; never its text."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    found = _ENHANCED.match(text)
    return found.group(0) if found else ""


def said_code(reply: bytes | str) -> str:
    """`` 5.1.1`` (the enhanced code with a space before it), or nothing."""
    code = enhanced(reply)
    return f" {code}" if code else ""
