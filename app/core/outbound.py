"""Every request to a URL a user gave us (hooks, callbacks, destinations) goes through this policy:
the host is resolved and refused when any address is private, loopback, link-local or otherwise not
public, unless allow-listed (local development and tests); redirects are never followed.

The connection then goes to the address that was checked (the request is pinned to it, with the
original Host header and TLS server name): a DNS answer that changes between the check and the
connection (DNS rebinding) cannot steer the request to a private address."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import httpx

from connectors.base import Permanent

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4)
def ca_bundle(extra_file: str = "") -> str:
    """A CA bundle path for clients that take one (requests-based SDKs, boto3): certifi's, plus the operator's
    ``extra_file`` when given (written once per content to the temporary directory)."""
    if not extra_file:
        return certifi.where()
    content = Path(certifi.where()).read_bytes() + b"\n" + Path(extra_file).read_bytes()
    path = Path(tempfile.gettempdir()) / f"relay-ca-{hashlib.sha256(content).hexdigest()[:16]}.pem"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}")
        partial.write_bytes(content)
        partial.replace(path)
    return str(path)


@lru_cache(maxsize=4)
def tls_context(extra_file: str = "") -> ssl.SSLContext:
    """One TLS context per bundle and process: httpx would load the bundle for every client otherwise."""
    return ssl.create_default_context(cafile=ca_bundle(extra_file))


class OutboundPolicy:
    def __init__(self, allow: str = "", timeout: float = 30.0, ca_file: str = ""):
        """``allow``: comma-separated host names and CIDR ranges that may be reached even if private;
        ``ca_file``: certificate authorities trusted besides certifi's."""
        self.ca_file = ca_file
        self._hosts: set[str] = set()
        self._networks: list[_Network] = []
        for item in filter(None, (part.strip() for part in allow.split(","))):
            try:
                self._networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self._hosts.add(item.lower())
        self._timeout = timeout

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Permanent(f"not an http(s) URL: {url[:100]}")
        self.check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    def check_host(self, host: str, port: int) -> str | None:
        """Refuse a host that resolves to any address not allowed; return the address to connect to
        (None for allow-listed host names, which are used as they are)."""
        host = host.lower()
        if host in self._hosts:
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise Permanent(f"cannot resolve {host}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if any(address in network for network in self._networks):
                continue
            if not address.is_global:
                raise Permanent(
                    f"{host} resolves to a non-public address ({address}); "
                    "allow it with RELAY_OUTBOUND_ALLOW for local development"
                )
        return str(infos[0][4][0])

    def client(self, **kwargs) -> httpx.Client:
        def guard(request: httpx.Request) -> None:
            url = request.url
            if url.scheme not in ("http", "https") or not url.host:
                raise Permanent(f"not an http(s) URL: {str(url)[:100]}")
            pinned = self.check_host(url.host, url.port or (443 if url.scheme == "https" else 80))
            # connect to the address just checked, not a fresh lookup
            if pinned and pinned != url.host:
                request.url = url.copy_with(host=pinned)
                request.extensions["sni_hostname"] = url.host

        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("verify", tls_context(self.ca_file))
        return _CookielessClient(follow_redirects=False, event_hooks={"request": [guard]}, **kwargs)


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing, and spends nothing on reading the Set-Cookie headers of every answer."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _CookielessClient(httpx.Client):
    """A worker's pooled client serves every tenant: a cookie one subscriber set must never go out with
    another's delivery, so it keeps none."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value) -> None:
        raise TypeError("the relay's outbound clients keep no cookies")
