"""A fake of the two identity platforms whose tokens sign in to SMTP with ``XOAUTH2``, for tests and local runs
(the SMTP server that checks the tokens is tests/support/smtp.py):

- Microsoft's identity platform: ``POST /{tenant}/oauth2/v2.0/token`` with the client-credentials grant, which
  SMTP AUTH takes only with the scope ``https://outlook.office365.com/.default``; a wrong secret is 401
  ``invalid_client`` (AADSTS7000215), an unknown app 400 ``unauthorized_client`` (AADSTS700016), an unknown
  tenant 400 (AADSTS90002), any other scope 400 ``invalid_scope`` (AADSTS70011). An app sends as a mailbox
  only when Exchange gave its service principal that mailbox (``Add-MailboxPermission``): ``apps``' mailboxes.
- Google's token endpoint: ``POST /token``, a service account's JWT (its ``sub``, the Workspace user it acts
  for by domain-wide delegation, must be granted the scope in the Admin console, else 401
  ``unauthorized_client``) or an OAuth client's refresh token (``invalid_grant`` when revoked, ``invalid_scope``
  for a scope the user never granted). A service account's own token (no ``sub``) has no mailbox.

Every token records who it speaks for and its scope; ``may_send`` is what the SMTP server asks."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, request
from google.auth import jwt as google_jwt

MICROSOFT_SMTP_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class MicrosoftApp:
    secret: str
    mailboxes: frozenset[str]
    """The mailboxes Exchange lets this app's service principal send as."""


@dataclass(frozen=True)
class GoogleUser:
    """An OAuth client's refresh token: who granted it, and which scopes."""

    client_id: str
    client_secret: str
    email: str
    scopes: frozenset[str] = frozenset({GOOGLE_MAIL_SCOPE})


@dataclass(frozen=True)
class Grant:
    platform: str
    """"microsoft" or "google"."""
    scope: str
    mailboxes: frozenset[str]
    expires: float


@dataclass
class FakeMailIdentity:
    tenant: str = "contoso.onmicrosoft.com"
    apps: dict[str, MicrosoftApp] = field(default_factory=dict)
    """client_id -> the app's secret and the mailboxes it may send as."""
    service_accounts: dict[str, str] = field(default_factory=dict)
    """private_key_id (the JWT's kid) -> public key PEM."""
    delegation: dict[str, frozenset[str]] = field(default_factory=dict)
    """A service account's client_email -> the scopes the Workspace admin granted it (domain-wide delegation)."""
    refresh_tokens: dict[str, GoogleUser] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule("/<tenant>/oauth2/v2.0/token", view_func=self._microsoft, methods=["POST"])
        app.add_url_rule("/token", view_func=self._google, methods=["POST"])
        return app

    def may_send(self, platform: str, token: str, user: str) -> bool:
        """What the mail server decides on ``AUTH XOAUTH2``: a live token of that platform, with its SMTP
        scope, that speaks for ``user``'s mailbox."""
        grant = self.grants.get(token)
        scope = MICROSOFT_SMTP_SCOPE if platform == "microsoft" else GOOGLE_MAIL_SCOPE
        return bool(
            grant
            and grant.platform == platform
            and grant.scope == scope
            and grant.expires > time.time()
            and user.lower() in grant.mailboxes
        )

    def expire_all(self) -> None:
        with self._lock:
            self.grants = {
                t: Grant(g.platform, g.scope, g.mailboxes, 0) for t, g in self.grants.items()
            }

    # -- Microsoft identity platform -----------------------------------------------------------------

    def _microsoft(self, tenant: str):
        self.token_requests += 1
        form = request.form
        if tenant != self.tenant:
            return _entra(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _entra(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        client = form.get("client_id", "")
        if client not in self.apps:
            return _entra(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier "
                f"'{client}' was not found in the directory.",
            )
        if form.get("client_secret") != self.apps[client].secret:
            return _entra(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != MICROSOFT_SMTP_SCOPE:
            return _entra(
                400,
                "invalid_scope",
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
            )
        token = self._grant("microsoft", MICROSOFT_SMTP_SCOPE, self.apps[client].mailboxes)
        return jsonify({"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    # -- Google ----------------------------------------------------------------------------------------

    def _google(self):
        self.token_requests += 1
        grant = request.form.get("grant_type", "")
        if grant == JWT_BEARER:
            try:
                claims = google_jwt.decode(
                    request.form.get("assertion", ""),
                    certs=self.service_accounts,
                    audience=[request.base_url, "https://oauth2.googleapis.com/token"],
                )
            except Exception:
                return _google_error(400, "invalid_grant", "Invalid JWT Signature.")
            scopes = set(str(claims.get("scope", "")).split())
            subject = str(claims.get("sub") or "")
            if subject and subject != claims.get("iss"):
                if not scopes <= self.delegation.get(str(claims.get("iss")), frozenset()):
                    return _google_error(
                        401,
                        "unauthorized_client",
                        "Client is unauthorized to retrieve access tokens using this method, or "
                        "client not authorized for any of the scopes requested.",
                    )
                mailboxes = frozenset({subject.lower()})
            else:
                mailboxes = frozenset()  # a service account has no mailbox of its own
        elif grant == "refresh_token":
            user = self.refresh_tokens.get(request.form.get("refresh_token", ""))
            if user is None or (user.client_id, user.client_secret) != (
                request.form.get("client_id"),
                request.form.get("client_secret"),
            ):
                return _google_error(400, "invalid_grant", "Token has been expired or revoked.")
            scopes = set(str(request.form.get("scope") or GOOGLE_MAIL_SCOPE).split())
            if not scopes <= user.scopes:
                return _google_error(400, "invalid_scope", "Bad Request")
            mailboxes = frozenset({user.email.lower()})
        else:
            return _google_error(400, "unsupported_grant_type", "Invalid grant_type.")
        scope = GOOGLE_MAIL_SCOPE if GOOGLE_MAIL_SCOPE in scopes else " ".join(sorted(scopes))
        token = self._grant("google", scope, mailboxes)
        return jsonify({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _grant(self, platform: str, scope: str, mailboxes: frozenset[str]) -> str:
        token = ("ya29." if platform == "google" else "eyJ0.") + secrets.token_urlsafe(24)
        with self._lock:
            self.grants[token] = Grant(platform, scope, mailboxes, time.time() + 3599)
        return token


def _entra(status: int, error: str, description: str) -> Response:
    code = int(description.split(":", 1)[0].removeprefix("AADSTS"))
    response = jsonify({"error": error, "error_description": description, "error_codes": [code]})
    response.status_code = status
    return response


def _google_error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response
