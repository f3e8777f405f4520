"""The check of an email destination, without sending a message: the server is reached with TLS as
configured, the sign-in works (and a password for Microsoft 365 is flagged: basic authentication goes off by
default at the end of December 2026), the server's SIZE limit against the attachment limit, and the sender
and recipients taken at MAIL and RCPT (then the transaction is reset, before any DATA)."""

from __future__ import annotations

import smtplib
from contextlib import ExitStack

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from . import oauth
from . import smtp as session

_OVERHEAD = 8 * 1024
"""Headers, the text part and MIME boundaries of a message, besides its attachment (generous)."""
_MICROSOFT_HOSTS = ("smtp.office365.com", "smtp-legacy.office365.com")


def check(target: Delivery, env: Environment) -> list[Check]:
    config = target.config
    found: list[Check] = []
    with ExitStack() as stack:
        try:
            smtp = stack.enter_context(session.connected(config, env, timeout=20))
        except (smtplib.SMTPException, OSError, DeliveryError) as exc:
            said = session.explain(exc, config).message
            return [Check("connects", Verdict.FAILURE, said, _connect_fix(said))]
        tls = {"starttls": " with STARTTLS", "ssl": " over TLS"}.get(session.security(config), "")
        where = f"{config['host']}:{session.port(config)}"
        found.append(Check("connects", Verdict.PASS, f"reached {where}{tls}"))
        try:
            how = session.sign_in(smtp, config, env)
        except (smtplib.SMTPException, OSError, DeliveryError) as exc:
            said = session.explain(exc, config).message
            return [*found, Check("signs in", Verdict.FAILURE, said, _sign_in_fix(config, said))]
        found.append(_signed_in(config, how))
        found.append(_size(session.size_limit(smtp), int(env.settings["email_attach_max_bytes"])))
        found.append(_envelope(smtp, config))
    return found


def _signed_in(config: dict, how: str) -> Check:
    password = (config.get("auth") or "password") == "password" and config.get("username")
    if password and str(config["host"]).lower() in _MICROSOFT_HOSTS:
        return Check(
            "signs in",
            Verdict.WARNING,
            f"{how}; Microsoft 365 turns basic authentication (a password) for SMTP AUTH off by "
            "default at the end of December 2026, and this destination will then stop working",
            "Sign in with OAuth: set auth to oauth_microsoft with an Entra app's tenant id, client id "
            "and client secret (the app needs SMTP.SendAsApp and Exchange's permission on the mailbox).",
        )
    return Check("signs in", Verdict.PASS, how)


def _size(limit: int | None, attach_max: int) -> Check:
    """A file up to ``attach_max`` is attached; base64 makes it 4/3 larger (and 78 bytes a line per 57)."""
    needed = attach_max * 78 // 57 + _OVERHEAD
    if limit is None:
        return Check(
            "message size",
            Verdict.PASS,
            f"the server announces no size limit; files up to {_bytes(attach_max)} are attached",
        )
    if limit >= needed:
        return Check(
            "message size",
            Verdict.PASS,
            f"the server takes messages up to {_bytes(limit)}; files up to {_bytes(attach_max)} "
            "are attached, larger ones sent as a link",
        )
    fits = max(0, (limit - _OVERHEAD) * 57 // 78)
    return Check(
        "message size",
        Verdict.WARNING,
        f"the server takes messages up to {_bytes(limit)}: files over about {_bytes(fits)} are sent "
        f"as a link instead of attached (Relay attaches up to {_bytes(attach_max)})",
        "Nothing to do if links are fine; otherwise raise the server's message size limit.",
    )


def _envelope(smtp: smtplib.SMTP, config: dict) -> Check:
    """MAIL and RCPT, then RSET: the server's answers about the sender and each recipient, no message."""
    try:
        code, reply = smtp.mail(config["from"])
        if code != 250:
            return Check(
                "sender and recipients",
                Verdict.FAILURE,
                f"the SMTP server refused the sender {config['from']} ({code}{session.said_code(reply)})",
                "Use a From address the signed-in mailbox may send as.",
            )
        answers = {r: smtp.rcpt(r) for r in config["to"]}
        smtp.rset()
    except (smtplib.SMTPException, OSError) as exc:
        said = session.explain(exc, config).message
        return Check("sender and recipients", Verdict.FAILURE, said, "Try the check again.")
    refused = {r: a for r, a in answers.items() if a[0] >= 500}
    deferred = {r: a for r, a in answers.items() if 400 <= a[0] < 500}
    if refused:
        return Check(
            "sender and recipients",
            Verdict.FAILURE,
            f"the SMTP server refused the recipients: {_listed(refused)}",
            "Check these addresses, or whether this server may send to them.",
        )
    if deferred:
        return Check(
            "sender and recipients",
            Verdict.WARNING,
            f"the SMTP server deferred the recipients: {_listed(deferred)} (greylisting, or a "
            "passing trouble): a delivery then waits and tries again",
            "Nothing to do; if it persists, ask the mail admin to allow this sender.",
        )
    return Check(
        "sender and recipients",
        Verdict.PASS,
        f"the server takes mail from {config['from']} to {', '.join(config['to'])}",
    )


def _connect_fix(said: str) -> str:
    if "TLS" in said or "ca_pem" in said:
        return (
            "Check the host name (the certificate must be for it) and the security setting; for a "
            "private CA, give its certificate in ca_pem."
        )
    return (
        "Check the host, the port and the security setting (587 with starttls, 465 with ssl), and that "
        "the relay may reach the server (firewall, egress)."
    )


def _sign_in_fix(config: dict, said: str) -> str:
    auth = config.get("auth") or "password"
    if "basic authentication" in said:
        return (
            "Set auth to oauth_microsoft (Microsoft 365) or oauth_google (Gmail); a password will not "
            "work on this server."
        )
    if auth == "password":
        return (
            "Check the user name and password (Gmail and Microsoft 365 accounts with two-step "
            "sign-in need an app password, or OAuth)."
        )
    if auth == "oauth_microsoft":
        if "Entra" in said:
            return "Check the tenant id, the client id and the client secret's value (not its id)."
        return (
            f"Give the app's service principal permission on the mailbox {oauth.mailbox(config)} in "
            "Exchange Online (Add-MailboxPermission), grant it SMTP.SendAsApp, and allow SMTP AUTH "
            "for the mailbox."
        )
    return (
        "For a service account, have the Workspace admin grant its client id the scope "
        "https://mail.google.com/ (domain-wide delegation); for a refresh token, make a new one with "
        f"that scope, signed in as {oauth.mailbox(config)}."
    )


def _listed(answers: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{r} ({code}{session.said_code(reply)})" for r, (code, reply) in answers.items()
    )


def _bytes(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f} MB".replace(".0 MB", " MB")
    return f"{max(1, round(count / 1000))} kB"
