"""Relay as an OpenID Connect client of the operators' identity provider, with Authlib: discovery, the
authorization code flow with PKCE (S256), and the ID token validated against the provider's keys (its
signature, issuer, audience, expiry and nonce; Authlib's CodeIDToken also checks at_hash and azp).

The issuer is the operator's own setting, not a tenant's: requests to it do not go through the outbound
policy that guards tenant-supplied hosts. Metadata and keys are kept per process (an unknown key id fetches
the keys again: the provider rotated them)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import httpx
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session

from app.core.config import RelayConfig

CALLBACK_PATH = "/sign-in/oidc/callback"
METADATA_SECONDS = 3600
"""How long discovery's answer is kept before it is read again."""
LEEWAY_SECONDS = 60
"""Clock difference allowed with the provider on the ID token's times."""


class SignInRefused(Exception):
    """The sign-in cannot be finished; the message says why in plain words (no secret in it)."""


def redirect_uri(config: RelayConfig) -> str:
    """What the provider must have registered for Relay's client, exactly."""
    return config.public_url.rstrip("/") + CALLBACK_PATH


class IdentityProvider(OpenIDMixin):
    def __init__(self, config: RelayConfig):
        self.issuer = config.oidc_issuer.rstrip("/")
        self.client_id = config.oidc_client_id
        self._secret = config.oidc_client_secret
        self._scope = config.oidc_scopes
        self._timeout = config.oidc_timeout_seconds
        self._redirect_uri = redirect_uri(config)
        self.server_metadata: dict = {}

    @contextmanager
    def _get_session(self):
        """Authlib's OAuth2 client (on requests): what OpenIDMixin fetches the keys with."""
        with OAuth2Session(
            client_id=self.client_id,
            client_secret=self._secret,
            scope=self._scope,
            redirect_uri=self._redirect_uri,
            code_challenge_method="S256",
            default_timeout=self._timeout,
            token_endpoint_auth_method="client_secret_basic",
        ) as client:
            yield client

    def load_server_metadata(self) -> dict:
        """Discovery (OpenID Connect Discovery 1.0): the provider's endpoints and keys' address. Its
        ``issuer`` must be the configured one exactly, or the answer is someone else's."""
        loaded = self.server_metadata.get("_loaded_at", 0)
        if time.time() - loaded < METADATA_SECONDS:
            return self.server_metadata
        url = self.issuer + "/.well-known/openid-configuration"
        try:
            answer = httpx.get(url, timeout=self._timeout)
            answer.raise_for_status()
            metadata = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInRefused(
                f"The identity provider's discovery document ({url}) could not be read: "
                f"{type(exc).__name__}."
            ) from None
        if metadata.get("issuer", "").rstrip("/") != self.issuer:
            raise SignInRefused(
                "The identity provider's discovery document names another issuer than "
                "RELAY_OIDC_ISSUER."
            )
        self.server_metadata = {**metadata, "_loaded_at": time.time()}
        return self.server_metadata

    def authorization_url(self, state: str, nonce: str, code_verifier: str) -> str:
        endpoint = self.load_server_metadata()["authorization_endpoint"]
        with self._get_session() as client:
            url, _ = client.create_authorization_url(
                endpoint, state=state, code_verifier=code_verifier, nonce=nonce
            )
        return url

    def claims(self, callback: dict[str, str], nonce: str, code_verifier: str) -> dict:
        """The validated ID token's claims for the callback's query (its state already checked)."""
        if error := callback.get("error"):
            raise SignInRefused(f"The identity provider refused the sign-in: {error[:100]}.")
        # RFC 9207: a provider that says who answered must be ours (a mix-up of providers otherwise)
        if "iss" in callback and callback["iss"].rstrip("/") != self.issuer:
            raise SignInRefused("The answer came from another identity provider.")
        if not callback.get("code"):
            raise SignInRefused("The identity provider sent no authorization code.")
        metadata = self.load_server_metadata()
        try:
            with self._get_session() as client:
                token = client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=callback["code"],
                    code_verifier=code_verifier,
                    redirect_uri=self._redirect_uri,
                )
        # the token endpoint's error, e.g. invalid_grant for a code used twice or a wrong PKCE verifier
        except OAuthError as exc:
            raise SignInRefused(
                f"The identity provider refused the code: {exc.error or 'error'}."
            ) from None
        except requests.RequestException as exc:
            raise SignInRefused(
                f"The identity provider could not be reached: {type(exc).__name__}."
            ) from None
        return self.validated(token, nonce)

    def validated(self, token: dict, nonce: str) -> dict:
        """The ID token's claims, once its signature (against the provider's keys), issuer, audience,
        expiry, nonce and at_hash hold."""
        if "id_token" not in token:
            raise SignInRefused("The identity provider sent no ID token.")
        # Authlib checks the audience only when told to (its default options name the issuer alone)
        options = {
            "iss": {"essential": True, "values": [self.load_server_metadata()["issuer"]]},
            "aud": {"essential": True, "values": [self.client_id]},
        }
        try:
            claims = self.parse_id_token(
                token, nonce=nonce, claims_options=options, leeway=LEEWAY_SECONDS
            )
        except Exception as exc:  # joserfc's errors: signature, claims (iss, aud, exp, nonce...)
            raise SignInRefused(f"The ID token is not valid: {exc}.") from None
        return dict(claims)
