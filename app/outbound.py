"""Every request to a URL a user gave us (hooks, callbacks, destinations) goes through this policy:
the host is resolved and refused when any address is private, loopback, link-local or otherwise not
public, unless allow-listed (local development and tests); redirects are never followed."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from connectors.base import Permanent

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundPolicy:
    def __init__(self, allow: str = "", timeout: float = 30.0):
        """``allow``: comma-separated host names and CIDR ranges that may be reached even if private."""
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

    def check_host(self, host: str, port: int) -> None:
        host = host.lower()
        if host in self._hosts:
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise Permanent(f"cannot resolve {host}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if any(address in network for network in self._networks):
                continue
            if not address.is_global:
                raise Permanent(f"{host} resolves to a non-public address ({address}); "
                                "allow it with RELAY_OUTBOUND_ALLOW for local development")

    def client(self, **kwargs) -> httpx.Client:
        def guard(request: httpx.Request) -> None:
            self.check(str(request.url))

        kwargs.setdefault("timeout", self._timeout)
        return httpx.Client(follow_redirects=False, event_hooks={"request": [guard]}, **kwargs)
