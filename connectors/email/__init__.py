"""Email through the customer's SMTP server (STARTTLS or SSL, with auth). The file is attached when it
is at most RELAY_EMAIL_ATTACH_MAX_BYTES, else the message carries a link that always leads to a fresh
download. The MIME message is spooled to a temporary file, its attachment base64-encoded chunk by
chunk, and streamed through DATA: no file is held in memory. The Message-ID derives from the delivery
id, so a duplicate sent after a crash is recognisable as one."""

from __future__ import annotations

import base64
import quopri
import re
import secrets
import smtplib
import ssl
import tempfile
from email.header import Header
from email.utils import formataddr, formatdate
from typing import IO

from .. import naming
from ..base import Delivery, Document, Environment, Outcome, Permanent, Retryable, headline, summary

MIME_NAME = naming.Rules(refused='/\\"')
"""A file name that sits in a quoted MIME parameter."""

_B64_BLOCK = 57 * 1024
_ENHANCED = re.compile(
    r"[245]\.\d{1,3}\.\d{1,3}\b"
)  # 57 raw bytes make one 76-character base64 line


class EmailKind:
    name = "email"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        sent = delivery.state.get("message_id")
        return (
            Outcome(f"email {sent} to {', '.join(delivery.config['to'])}", sent) if sent else None
        )

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        config = delivery.config
        # checked now, and the socket opened to this very address (no second lookup to rebind)
        address = env.settings["connect"](config["host"], int(config.get("port") or 587))
        message_id = f"<{delivery.delivery_id.lower()}@overten-relay>"
        attach = (
            document is not None
            and document.size is not None
            and document.size <= int(env.settings["email_attach_max_bytes"])
        )
        with tempfile.TemporaryFile() as spool:
            _write_message(spool, delivery, document, message_id, attach)
            spool.seek(0)
            _send(config, address, spool)
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


def _tls_context(config: dict) -> ssl.SSLContext:
    """The system's authorities, and the tenant's own CA certificate if it gave one (``ca_pem``). A path
    on the worker (``ca_file``, before) is never opened: what it answered told whether a file exists."""
    if config.get("ca_file"):
        raise Permanent(
            "ca_file is not read any more: give the CA certificate's PEM text in ca_pem"
        )
    context = ssl.create_default_context()
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


def _send(config: dict, address: str, spool: IO[bytes]) -> None:
    host, port, security = (
        config["host"],
        int(config.get("port") or 587),
        config.get("security", "starttls"),
    )
    context = _tls_context(config)
    try:
        smtp = (
            _PinnedSMTPSSL(host, address, context=context, timeout=60)
            if security == "ssl"
            else _PinnedSMTP(host, address, timeout=60)
        )
        code, reply = smtp.connect(host, port)
        if code != 220:
            smtp.close()
            raise smtplib.SMTPConnectError(code, reply)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            if config.get("username"):
                smtp.login(config["username"], config.get("password", ""))
            smtp.mail(config["from"])
            for recipient in config["to"]:
                code, reply = smtp.rcpt(recipient)
                if code >= 400:
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            code, reply = smtp.docmd("DATA")
            if code != 354:
                raise smtplib.SMTPDataError(code, reply)
            while block := spool.read(64 * 1024):
                smtp.send(block)
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
    except smtplib.SMTPAuthenticationError as exc:
        raise Permanent(f"the SMTP server refused the login ({exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise Permanent(
            f"the SMTP server refused the recipients: {', '.join(exc.recipients)}"
        ) from None
    except smtplib.SMTPResponseException as exc:
        kind = Retryable if 400 <= exc.smtp_code < 500 else Permanent
        said = f"the SMTP server answered {exc.smtp_code}{_enhanced(exc.smtp_error)}"
        raise kind(said) from None
    except ssl.SSLError as exc:
        raise Permanent(f"TLS with the SMTP server failed: {exc.reason}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise Retryable(f"the SMTP server could not be reached ({type(exc).__name__})") from None


def _enhanced(reply: bytes | str) -> str:
    """The reply's enhanced status code (RFC 3463, ``5.7.1``), the server's own code; never its text."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    code = _ENHANCED.match(text)
    return f" ({code.group(0)})" if code else ""


KIND = EmailKind()
