"""Every request to a URL a user gave us (hooks, callbacks, destinations, token URIs, S3 endpoints, SMTP
hosts, the platforms' SDKs) goes through this policy: the host is resolved and refused when any address is
private, loopback, link-local or otherwise not public, unless allow-listed (local development and tests);
an IPv4 address inside an IPv6 one (mapped, compatible, 6to4, NAT64, Teredo) is judged by the IPv4 rules;
redirects are never followed. A name that does not resolve is a permanent failure; a DNS failure that passes
(EAI_AGAIN, a resolver's SERVFAIL) is a temporary one, so a DNS blip retries deliveries instead of killing them.

The connection then goes to the address that was checked (the request is pinned to it, with the
original Host header and TLS server name): a DNS answer that changes between the check and the
connection (DNS rebinding) cannot steer the request to a private address. Three transports do it:
``client()`` (httpx), ``session()`` (requests: google-auth, msal, Dropbox, pyairtable) and ``pin_pools``
(urllib3 pools: boto3, the HubSpot client); ``connect()`` gives SMTP the address to connect to."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import httpx
import requests
import urllib3

from connectors.base import Permanent, Retryable
from connectors.sessions import TrustingSession

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PASSING_DNS_FAILURES = frozenset(
    # EAI_AGAIN: "Temporary failure in name resolution" (a timeout, a SERVFAIL); EAI_FAIL: musl's answer to a
    # resolver that refused the query (and to a name without addresses, which then dies after its retries);
    # EAI_SYSTEM: the lookup could not be sent. A name that does not exist (EAI_NONAME) stays permanent
    getattr(socket, name)
    for name in ("EAI_AGAIN", "EAI_FAIL", "EAI_SYSTEM")
    if hasattr(socket, name)
)


@lru_cache(maxsize=4)
def ca_bundle(extra_file: str = "") -> str:
    """A CA bundle path for clients that take one (requests-based SDKs, boto3): certifi's, plus the operator's
    ``extra_file`` when given (written once per content to the temporary directory)."""
    if not extra_file:
        return certifi.where()
    content = Path(certifi.where()).read_bytes() + b"\n" + Path(extra_file).read_bytes()
    path = Path(tempfile.gettempdir()) / f"relay-ca-{hashlib.sha256(content).hexdigest()[:16]}.pem"
    if not path.exists():
        # one partial file per thread: a worker's lane asks from several threads at once
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
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
        self._pinned_pools: dict[type, type] = {}

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Permanent(f"not an http(s) URL: {url[:100]}")
        self.check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    def check_host(self, host: str, port: int) -> str | None:
        """Refuse a host that resolves to any address not allowed; return the address to connect to
        (None for allow-listed host names, which are used as they are)."""
        host = host.lower().strip("[]")
        if host in self._hosts:
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in _PASSING_DNS_FAILURES:
                raise Retryable(
                    f"cannot resolve {host[:100]} for now (DNS failed; will retry)"
                ) from None
            raise Permanent(f"cannot resolve {host[:100]}") from None
        except UnicodeError:
            raise Permanent(f"cannot resolve {host[:100]}") from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if not self.allows(address):
                raise Permanent(
                    f"{host[:100]} resolves to a non-public address ({address}); "
                    "allow it with RELAY_OUTBOUND_ALLOW for local development"
                )
        return str(infos[0][4][0])

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Public, or allow-listed; an IPv4 address inside an IPv6 one is judged as that IPv4 address."""
        inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []
        if any(a in network for a in (address, *inner) for network in self._networks):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address in _LOCAL_NAT64:
            return False  # where the IPv4 address sits depends on the operator's prefix length
        if inner:
            return all(a.is_global for a in inner)
        return address.is_global

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

    def session(self, timeout: float | None = None) -> requests.Session:
        """A requests session (for google-auth, msal, Dropbox, pyairtable) that never follows a redirect and
        connects only to addresses checked at connect time; ``timeout``: for calls that set none."""
        return _PolicySession(self, ca_bundle(self.ca_file), timeout)

    def pin_pools(self, manager: urllib3.PoolManager) -> urllib3.PoolManager:
        """Make every connection of ``manager`` (and of each pool it makes from now on, so each hop of a
        redirect too) check its host and connect to the checked address; its own pool and connection classes
        (botocore's, say) keep the rest of their behaviour."""
        manager.pool_classes_by_scheme = {
            scheme: self._pinned_pool(pool)
            for scheme, pool in manager.pool_classes_by_scheme.items()
        }
        manager.clear()
        return manager

    def _pinned_pool(self, pool: type) -> type:
        """``pool`` with a connection class that connects to checked addresses: made once per class."""
        if getattr(pool, "relay_policy", None) is self:
            return pool
        if pool not in self._pinned_pools:
            policy = self

            class Connection(pool.ConnectionCls):  # type: ignore[name-defined]
                def _new_conn(self):
                    return _pinned(self, policy, super()._new_conn)

            attributes = {"ConnectionCls": Connection, "relay_policy": policy}
            self._pinned_pools[pool] = type(pool.__name__, (pool,), attributes)
        return self._pinned_pools[pool]

    def connect(self, host: str, port: int) -> str:
        """The address to open a socket to for ``host`` (checked; the name itself when allow-listed by name):
        for clients that connect themselves (SMTP) and keep the name for TLS."""
        return self.check_host(host, port) or host


_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT's IPv4-translated addresses


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which a connection to it may end up reaching: mapped
    (::ffff:a.b.c.d), compatible (::a.b.c.d), SIIT, 6to4 (2002::/16), NAT64 (64:ff9b::/96) and Teredo
    (2001::/32: its server, and its client's address, inverted in the last 32 bits)."""
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address.teredo:
        return list(address.teredo)
    if address.sixtofour:
        return [address.sixtofour]
    if int(address) >> 32 == 0 and int(address) > 1:  # not :: nor ::1, which are IPv6's own
        return [low]
    if address in _NAT64 or address in _TRANSLATED:
        return [low]
    return []


def _pinned(connection, policy: OutboundPolicy, new_conn):
    """Open a urllib3 connection's socket to the address its host was checked as; the host name stays for
    the Host header and TLS (server name, certificate). Through a proxy, the tunnel's target is checked and
    the proxy connects."""
    target = getattr(connection, "_tunnel_host", None)
    if target:
        policy.check_host(target, getattr(connection, "_tunnel_port", None) or 443)
        return new_conn()
    address = policy.check_host(connection.host, connection.port)
    if not address:
        return new_conn()
    named = connection._dns_host
    connection._dns_host = address
    try:
        return new_conn()
    finally:
        connection._dns_host = named


class _PolicyAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, policy: OutboundPolicy, timeout: float | None):
        self._policy, self._timeout = policy, timeout
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._policy.pin_pools(self.poolmanager)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if requests.utils.select_proxy(request.url, proxies or {}):
            self._policy.check(request.url)  # the proxy connects: the name is checked here
        timeout = self._timeout if timeout is None else timeout
        return super().send(request, stream, timeout, verify, cert, proxies)


class _PolicySession(TrustingSession):
    def __init__(self, policy: OutboundPolicy, bundle: str, timeout: float | None):
        super().__init__(bundle)
        adapter = _PolicyAdapter(policy, timeout)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def get_redirect_target(self, resp):
        return None  # a redirect is an answer like any other: never followed


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
