"""A real SMTP server for tests: aiosmtpd on loopback with STARTTLS (a self-signed certificate made for
the test) and AUTH, keeping every message it accepts. As strict as the servers users meet (sources in
docs/platforms.md, "Email (SMTP)"):

- greylisting (``greylist``): the first RCPT of each sender/recipient pair is deferred with Postgrey's
  ``450 4.2.0`` reply, a later one accepted;
- a size limit (``size_limit``): announced as ``SIZE`` in the EHLO answer, a ``MAIL FROM ... SIZE=`` over it
  refused with 552, and so is a message over it at the end of DATA (aiosmtpd's own checks);
- Microsoft 365's 3 connections per mailbox (``sessions_per_mailbox``): a MAIL FROM on a fourth connection
  signed in as the same mailbox is answered ``432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded``;
- Microsoft 365's recipients per day (``recipients_per_day``): past it, a message is refused at the end of
  DATA with ``554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException``;
- basic authentication off (``basic_auth=False``): AUTH PLAIN and LOGIN answered as Microsoft 365 answers
  them then, ``535 5.7.139 Authentication unsuccessful, basic authentication is disabled``;
- ``AUTH XOAUTH2`` (``oauth``): the token must be one the test's identity platform (connectors.email.fake)
  issued for the mailbox named in ``user=``, with the platform's SMTP scope; refused as Microsoft 365
  (``535 5.7.3``) or Gmail (a 334 challenge with the error as JSON, then ``535 5.7.8``) refuse it."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SMTP_NAME = "smtp.relay.test"
GREYLISTED = (
    "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see "
    "http://postgrey.schweikert.ch/help/example.com.html"
)
BASIC_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
    "[AM0PR01CA0001.eurprd01.prod.exchangelabs.com]"
)
MICROSOFT_OAUTH_REFUSED = (
    "535 5.7.3 Authentication unsuccessful [AM0PR01CA0001.eurprd01.prod.exchangelabs.com]"
)
SENDER_THREAD_LIMIT = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
RECIPIENT_RATE_LIMIT = (
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process "
    "message due to a permanent exception with message [BeginDiagnosticData]"
)
GMAIL_OAUTH_REFUSED = (
    "535-5.7.8 Username and Password not accepted. For more information, go to",
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1-20020a05.1 - gsmtp",
)


def self_signed(directory: Path, names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, SMTP_NAME and ``names`` (a real provider's host name that a test's
    resolver sends to loopback)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            # and a name, for tests that resolve it themselves (tests/relay/test_ssrf.py)
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    *(x509.DNSName(name) for name in (SMTP_NAME, *names)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Mailbox:
    def __init__(self, users: dict[str, str]):
        self.users = users
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse_next: list[str] = []
        """Replies to give instead of accepting the next messages (e.g. '451 try again later')."""
        self.greylist = False
        """Defer the first RCPT of each (sender, recipient) pair, as a greylisting server does, and each
        retry that comes before ``greylist_delay`` seconds have passed (Postgrey's --delay, 300 by default)."""
        self.greylist_delay = 0.0
        self.clock = time.monotonic
        self.first_seen: dict[tuple[str, str], float] = {}
        self.deferred: list[tuple[str, str]] = []
        """(sender, recipient) of each RCPT deferred by greylisting."""
        self.basic_auth = True
        """False: AUTH PLAIN and LOGIN refused as Microsoft 365 refuses them once basic auth is off."""
        self.oauth: tuple[str, object] | None = None
        """("microsoft" or "google", connectors.email.fake.FakeMailIdentity): AUTH XOAUTH2 checks its tokens."""
        self.hang_up_after_refusal = False
        """Close the connection right after refusing an XOAUTH2 token, as some servers do."""
        self.signed_in: list[tuple[str, str]] = []
        """(mechanism, user) of each AUTH that succeeded."""
        self.mail_sizes: list[int | None] = []
        """The SIZE= of each MAIL FROM (None when the client gave none)."""
        self.sessions_per_mailbox: int | None = None
        """Microsoft 365's 3: a MAIL FROM on a connection signed in as a mailbox that already has this many
        other connections open is answered 432 4.3.2 (sender thread limit)."""
        self.open_sessions: dict[str, list[object]] = {}
        """The connections signed in as each mailbox, oldest first, until they close."""
        self.thread_limited: list[str] = []
        self.recipients_per_day: int | None = None
        """Exchange Online's 10,000 (scaled down by tests): a message that would take the mailbox's recipients
        of the day past it is refused at the end of DATA with 554 5.2.0."""
        self.recipients_today: dict[str, int] = {}

    def signed(self, session, user: str, mechanism: str) -> None:
        self.signed_in.append((mechanism, user))
        self.open_sessions.setdefault(user, []).append(session)

    def closed(self, session) -> None:
        for sessions in self.open_sessions.values():
            if session in sessions:
                sessions.remove(session)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        user = next((u for u, open_ in self.open_sessions.items() if session in open_), None)
        limit = self.sessions_per_mailbox
        if user and limit and self.open_sessions[user].index(session) >= limit:
            self.thread_limited.append(user)
            return SENDER_THREAD_LIMIT
        size = next((o.split("=", 1)[1] for o in mail_options if o.startswith("SIZE=")), None)
        self.mail_sizes.append(int(size) if size else None)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        pair, now = (envelope.mail_from, address), self.clock()
        if self.greylist and (
            pair not in self.first_seen or now - self.first_seen[pair] < self.greylist_delay
        ):
            self.first_seen.setdefault(pair, now)
            self.deferred.append(pair)
            return GREYLISTED.format(rcpt=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_next:
            return self.refuse_next.pop(0)
        user = next((u for u, open_ in self.open_sessions.items() if session in open_), "")
        count = self.recipients_today.get(user, 0) + len(envelope.rcpt_tos)
        if self.recipients_per_day is not None and count > self.recipients_per_day:
            return RECIPIENT_RATE_LIMIT
        self.recipients_today[user] = count
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if not self.basic_auth:
            return AuthResult(success=False, handled=False, message=BASIC_AUTH_DISABLED)
        if (
            isinstance(auth_data, LoginPassword)
            and self.users.get(auth_data.login.decode()) == auth_data.password.decode()
        ):
            self.signed(session, auth_data.login.decode(), mechanism)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server, args):
        """SASL XOAUTH2: base64("user=" user "^Aauth=Bearer " token "^A^A"), as the initial response or
        after an empty challenge."""
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
        fields = dict(
            part.split("=", 1)
            for part in blob.decode(errors="replace").split("\x01")
            if "=" in part
        )
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        platform, identity = self.oauth or ("microsoft", None)
        if identity is not None and identity.may_send(platform, token, user):  # type: ignore[attr-defined]
            self.signed(server.session, user, "XOAUTH2")
            return AuthResult(success=True, auth_data=user)
        if platform == "google":
            # Gmail says why in a challenge, waits for an empty answer, then refuses
            said = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
            await server.challenge_auth(json.dumps(said))
            await server.push(GMAIL_OAUTH_REFUSED[0])
            return AuthResult(success=False, handled=False, message=GMAIL_OAUTH_REFUSED[1])
        if self.hang_up_after_refusal:
            await server.push(MICROSOFT_OAUTH_REFUSED)
            server.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=MICROSOFT_OAUTH_REFUSED)


class _Smtp(SMTP):
    """aiosmtpd's protocol, telling the mailbox when a connection ends (its sessions per mailbox)."""

    def connection_lost(self, error):
        self.event_handler.closed(self.session)
        super().connection_lost(error)


class _Controller(Controller):
    def factory(self):
        return _Smtp(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    def __init__(
        self,
        directory: Path,
        port: int,
        users: dict[str, str],
        size_limit: int | None = None,
        names: tuple[str, ...] = (),
    ):
        """``size_limit``: announced as SIZE and enforced (aiosmtpd's default, 32 MiB, otherwise); ``names``:
        more host names its certificate is for."""
        self.cert, key = self_signed(directory, names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.mailbox = Mailbox(users)
        self.port = port
        self._controller = _Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            authenticator=self.mailbox.authenticate,
            auth_require_tls=True,
            **({"data_size_limit": size_limit} if size_limit else {}),
        )

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
