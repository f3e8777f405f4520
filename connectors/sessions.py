"""requests sessions for the platform SDKs built on requests (msal, Dropbox): they trust the relay's CA
bundle (certifi's plus RELAY_OUTBOUND_CA_FILE, ``env.settings["ca_bundle"]``) even when REQUESTS_CA_BUNDLE
or CURL_CA_BUNDLE is set, which requests would otherwise let override a session's own ``verify``
(psf/requests#3829). Proxies from the environment still apply."""

from __future__ import annotations

import requests


class TrustingSession(requests.Session):
    def __init__(self, ca_bundle: str | None):
        super().__init__()
        self.verify = ca_bundle or True

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings
