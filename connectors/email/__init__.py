"""Email through the customer's SMTP server (STARTTLS or SSL; a password, or OAuth's XOAUTH2 for Microsoft 365
and Gmail: connectors/email/smtp.py). The file is attached when it is at most RELAY_EMAIL_ATTACH_MAX_BYTES and
the message fits the server's SIZE limit, else the message carries a link that always leads to a fresh
download. The MIME message is spooled to a temporary file, its attachment base64-encoded chunk by
chunk, and streamed through DATA: no file is held in memory. The Message-ID derives from the delivery
id, so a duplicate sent after a crash is recognisable as one."""

from __future__ import annotations

import base64
import quopri
import secrets
import smtplib
import tempfile
from email.header import Header
from email.utils import formataddr, formatdate
from typing import IO

from .. import naming
from ..base import (
    Check,
    Delivery,
    DeliveryError,
    Document,
    Environment,
    Outcome,
    Permanent,
    Retryable,
    headline,
    summary,
)
from . import smtp as session

MIME_NAME = naming.Rules(refused='/\\"')
"""A file name that sits in a quoted MIME parameter."""

_B64_BLOCK = 57 * 1024  # 57 raw bytes make one 76-character base64 line


class EmailKind:
    name = "email"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        sent = delivery.state.get("message_id")
        return (
            Outcome(f"email {sent} to {', '.join(delivery.config['to'])}", sent) if sent else None
        )

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        from .check import check

        return check(target, env)

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        config = delivery.config
        message_id = f"<{delivery.delivery_id.lower()}@overten-relay>"
        attach = (
            document is not None
            and document.size is not None
            and document.size <= int(env.settings["email_attach_max_bytes"])
        )
        with tempfile.TemporaryFile() as spool:
            _write_message(spool, delivery, document, message_id, attach)
            try:
                with session.connected(config, env) as smtp:
                    session.sign_in(smtp, config, env)
                    limit = session.size_limit(smtp)
                    if attach and limit is not None and spool.tell() > limit:
                        # the server would refuse it (552): the file goes as a link instead
                        attach = False
                        spool.seek(0)
                        spool.truncate()
                        _write_message(spool, delivery, document, message_id, attach)
                    size = spool.tell()
                    spool.seek(0)
                    _send(smtp, config, spool, size, env)
            except (smtplib.SMTPException, OSError, DeliveryError) as exc:
                wait = min(60.0, float(env.settings.get("email_deferred_retry_seconds") or 300))
                raise session.explain(exc, config, wait) from None
        env.save_state(delivery.delivery_id, {"message_id": message_id})
        how = "attached" if attach else "as a link" if document else "words only"
        return Outcome(f"email {message_id} to {', '.join(config['to'])} ({how})", message_id)


def _write_message(
    out: IO[bytes], delivery: Delivery, document: Document | None, message_id: str, attach: bool
) -> None:
    """The message; without a document (an alert), its words alone."""
    config, text = delivery.config, summary(delivery.event)
    boundary = "relay-" + secrets.token_hex(12)
    name = naming.file_name(delivery, document, MIME_NAME) if document else ""
    subject = config.get("subject") or (
        f"{headline(delivery.event)}: {name}" if name else headline(delivery.event)
    )
    headers = [
        ("From", formataddr(("Overten Relay", config["from"]))),
        ("To", ", ".join(config["to"])),
        ("Subject", Header(subject, "utf-8").encode()),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
    ]
    _lines(out, [f"{header}: {value}" for header, value in headers] + [""])
    link = (
        ""
        if document is None
        else f"Download: {document.link}"
        if attach
        else f"The file is too large to attach. Download it here: {document.link}"
    )
    body = quopri.encodestring(f"{text}\n\n{link}\n".encode()).decode()
    _lines(
        out,
        [
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            *body.splitlines(),
        ],
    )
    if attach and document is not None:
        _lines(
            out,
            [
                f"--{boundary}",
                f'Content-Type: {document.content_type}; name="{name}"',
                "Content-Transfer-Encoding: base64",
                f'Content-Disposition: attachment; filename="{name}"',
                "",
            ],
        )
        _base64(out, document)
    _lines(out, [f"--{boundary}--"])


def _lines(out: IO[bytes], lines: list[str]) -> None:
    for line in lines:
        if line.startswith("."):
            line = "." + line  # SMTP dot-stuffing: the message is sent through DATA as it is
        out.write(line.encode() + b"\r\n")


def _base64(out: IO[bytes], document: Document) -> None:
    pending = b""
    with document.open(0) as chunks:
        for chunk in chunks:
            pending += chunk
            whole = len(pending) - len(pending) % 57
            _encoded(out, pending[:whole])
            pending = pending[whole:]
    _encoded(out, pending)


def _encoded(out: IO[bytes], data: bytes) -> None:
    for start in range(0, len(data), _B64_BLOCK):
        # 76-character lines, \n-terminated
        encoded = base64.encodebytes(data[start : start + _B64_BLOCK])
        out.write(encoded.replace(b"\n", b"\r\n"))


def _send(smtp: smtplib.SMTP, config: dict, spool: IO[bytes], size: int, env: Environment) -> None:
    """The envelope and the message. A recipient deferred (4xx at RCPT: greylisting, a full mailbox) makes the
    delivery wait and try again; one refused (5xx) ends it, named."""
    options = [f"SIZE={size}"] if smtp.has_extn("size") else []
    code, reply = smtp.mail(config["from"], options)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, config["from"])
    answers = {recipient: smtp.rcpt(recipient) for recipient in config["to"]}
    refused = {r: (code, reply) for r, (code, reply) in answers.items() if code >= 400}
    said = ", ".join(
        f"{r} ({code}{session.said_code(reply)})" for r, (code, reply) in refused.items()
    )
    if any(code >= 500 for code, _ in refused.values()):
        raise Permanent(f"the SMTP server refused the recipients: {said}")
    if refused:
        raise Retryable(
            f"the SMTP server deferred the recipients: {said}; greylisting or a passing trouble, "
            "tried again later",
            retry_after=float(env.settings.get("email_deferred_retry_seconds") or 300),
        )
    code, reply = smtp.docmd("DATA")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    while block := spool.read(64 * 1024):
        smtp.send(block)
    smtp.send(b".\r\n")
    code, reply = smtp.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


KIND = EmailKind()
