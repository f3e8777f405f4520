"""Whether a link of the relay can be reached from the internet, where a platform's servers fetch it
(Airtable downloads an attachment from its URL). No relay import here."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def private_address(url: str) -> str:
    """The private, loopback or link-local address the URL's host resolves to ("" when every address is on
    the internet, or the name does not resolve here: a name only the internet knows may still work)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ""
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            return str(address)
    return ""
