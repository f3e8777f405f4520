"""The outbound-address policy for URLs users give us: private ranges refused after DNS resolution, the
connection pinned to the checked address (DNS rebinding), redirects never followed, an allow-list."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from app.core.outbound import OutboundPolicy, ca_bundle
from connectors.base import Permanent, Retryable


@pytest.fixture
def dns(monkeypatch):
    """A resolver we control: each call pops the next answer for a name (a rebinding attacker's DNS)."""
    answers: dict[str, list[str]] = {}

    def resolve(host, port, *args, **kwargs):
        queue = answers.get(host)
        if not queue:
            raise socket.gaierror(f"no such host {host}")
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return answers


def _seen(
    policy: OutboundPolicy, url: str, status: int = 204, headers: dict | None = None
) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(status, headers=headers or {})

    with policy.client(transport=httpx.MockTransport(handler)) as client:
        response = client.get(url)
    assert response.status_code == status
    return captured[0]


PRIVATE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.1",
    "169.254.169.254",
    "::1",
    "fc00::1",
    "fe80::1",
    "100.64.0.1",
    "0.0.0.0",
]


def test_private_loopback_and_link_local_addresses_are_refused(dns, reliability):
    for address in PRIVATE:
        dns["internal.example"] = [address]
        with pytest.raises(Permanent, match="non-public address"):
            _seen(OutboundPolicy(), "https://internal.example/hook")
    reliability(
        fault="user URLs resolving to private, loopback, link-local, CGNAT or unspecified addresses",
        tried=len(PRIVATE),
        lost=0,
        duplicated="-",
        notes="all refused after DNS resolution",
    )


def test_the_connection_is_pinned_to_the_checked_address(dns, reliability):
    # public when checked, loopback right after
    dns["rebind.example"] = [
        "93.184.216.34",
        "127.0.0.1",
    ]
    request = _seen(OutboundPolicy(), "https://rebind.example/hook?x=1")
    assert request.url.host == "93.184.216.34" and request.url.path == "/hook"
    assert request.headers["host"] == "rebind.example"  # the server still sees its own name
    assert request.extensions["sni_hostname"] == "rebind.example"  # and TLS checks its certificate
    reliability(
        fault="DNS rebinding (public when checked, 127.0.0.1 right after)",
        tried=1,
        lost=0,
        duplicated="-",
        notes="the request went to the checked address; redirects are never followed",
    )


def test_redirects_are_not_followed(dns):
    dns["public.example"] = ["93.184.216.34"]
    request = _seen(
        OutboundPolicy(),
        "https://public.example/a",
        status=302,
        headers={"Location": "http://127.0.0.1/admin"},
    )
    assert request.url.path == "/a"  # one request only: the redirect's target was never asked


def test_a_cookie_a_subscriber_sets_is_never_sent_again(dns):
    """One pooled client serves every tenant's deliveries: a Set-Cookie from one subscriber must not ride
    along with the next delivery to the same host (perhaps another tenant's)."""
    # an address in the URL: nothing is rewritten by the pinning
    dns["93.184.216.34"] = ["93.184.216.34"]
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, headers={"Set-Cookie": "session=tenant-a; Path=/"})

    with OutboundPolicy().client(transport=httpx.MockTransport(handler)) as client:
        client.post("https://93.184.216.34/a", content=b"{}")
        client.post("https://93.184.216.34/b", content=b"{}")
    assert "cookie" not in sent[1].headers


def test_the_allow_list_admits_ranges_and_names(dns):
    dns["dev.internal"] = ["10.0.0.5"]
    assert _seen(OutboundPolicy("10.0.0.0/8"), "http://dev.internal/x").url.host == "10.0.0.5"
    assert _seen(OutboundPolicy("dev.internal"), "http://dev.internal/x").url.host == "dev.internal"
    with pytest.raises(Permanent, match="not an http"):
        _seen(OutboundPolicy(), "ftp://dev.internal/x")
    with pytest.raises(Permanent, match="cannot resolve"):
        _seen(OutboundPolicy(), "https://nowhere.example/x")


# IPv4 addresses inside IPv6 ones: a connection to each may reach the IPv4 address it carries
WRAPPED_PRIVATE = {
    "::127.0.0.1": "IPv4-compatible",
    "::ffff:169.254.169.254": "IPv4-mapped",
    "::ffff:0:10.0.0.1": "IPv4-translated (SIIT)",
    "2002:7f00:1::": "6to4 of 127.0.0.1",
    "2002:a9fe:a9fe::1": "6to4 of 169.254.169.254",
    "64:ff9b::7f00:1": "NAT64 of 127.0.0.1",
    "64:ff9b::a9fe:a9fe": "NAT64 of 169.254.169.254",
    "64:ff9b:1::a00:1": "local-use NAT64",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo, client 127.0.0.1",
    "2001:0:a00:1:8000:63bf:3fff:fdd2": "Teredo, server 10.0.0.1",
}


def test_private_ipv4_inside_ipv6_forms_is_refused(dns, reliability):
    for address, form in WRAPPED_PRIVATE.items():
        dns["wrapped.example"] = [address]
        with pytest.raises(Permanent, match="non-public address"):
            _seen(OutboundPolicy(), "https://wrapped.example/hook")
            pytest.fail(f"{form} ({address}) was let through")
    reliability(
        fault="private IPv4 inside IPv6 forms (mapped, compatible, 6to4, NAT64, Teredo)",
        tried=len(WRAPPED_PRIVATE),
        lost=0,
        duplicated="-",
        notes="each unwrapped and judged by the IPv4 rules",
    )


def test_public_ipv4_inside_ipv6_forms_is_let_through(dns):
    policy = OutboundPolicy()
    for address in ("::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"):
        dns["public6.example"] = [address]
        assert _seen(policy, "https://public6.example/hook").url.host == address


def test_the_allow_list_applies_to_the_ipv4_inside(dns):
    dns["dev6.example"] = ["::ffff:10.0.0.5"]
    assert (
        _seen(OutboundPolicy("10.0.0.0/8"), "http://dev6.example/x").url.host == "::ffff:10.0.0.5"
    )


@pytest.fixture
def loopback():
    """A server on 127.0.0.1 that redirects /away to 127.0.0.2, and one on 127.0.0.2 (internal here)."""
    from werkzeug.wrappers import Request, Response

    from tests.support.servers import ServedApp

    hits: list[str] = []

    def app(environ, start_response):
        request = Request(environ)
        hits.append(f"{request.host.split(':')[0]}{request.path}")
        if request.path == "/away":
            answer = Response(status=302, headers={"Location": inside.url + "/secret"})
        else:
            answer = Response("ok")
        return answer(environ, start_response)

    outside, inside = ServedApp(app).start(), ServedApp(app, host="127.0.0.2").start()
    yield outside, inside, hits
    outside.stop()
    inside.stop()


def test_the_sdk_session_follows_no_redirect_and_pins_each_connection(loopback, monkeypatch):
    outside, inside, hits = loopback
    policy = OutboundPolicy("127.0.0.1/32")
    with policy.session(timeout=5) as session:
        assert session.get(outside.url + "/away").status_code == 302
        with pytest.raises(Permanent, match="non-public address"):
            session.get(inside.url + "/direct")
        # rebinding: public-looking when checked; the socket still goes to what was checked
        real = socket.getaddrinfo
        answers = iter(["127.0.0.1", "127.0.0.2"])

        def resolve(host, port, *args, **kwargs):
            if host != "rebind.test":
                return real(host, port, *args, **kwargs)
            return real(next(answers, "127.0.0.2"), port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        assert session.get(f"http://rebind.test:{outside.port}/pinned").text == "ok"
    assert hits == ["127.0.0.1/away", "rebind.test/pinned"]


def test_pinned_urllib3_pools_check_every_hop(loopback):
    import urllib3

    outside, _inside, hits = loopback
    manager = OutboundPolicy("127.0.0.1/32").pin_pools(urllib3.PoolManager())
    with pytest.raises(Permanent, match="non-public address"):
        manager.request("GET", outside.url + "/away")  # urllib3 follows; the second hop is refused
    assert hits == ["127.0.0.1/away"]


def test_a_passing_dns_failure_is_temporary_and_an_unknown_name_permanent(monkeypatch):
    """EAI_AGAIN ("Temporary failure in name resolution") and EAI_FAIL (a resolver failing) pass: a delivery
    tries again later. EAI_NONAME (no such name) will answer the same: the dead letters. Each transport the
    connectors use says so alike."""
    errors = {
        "flaky.example": socket.EAI_AGAIN,
        "servfail.example": socket.EAI_FAIL,
        "nowhere.example": socket.EAI_NONAME,
    }

    def resolve(host, port, *args, **kwargs):
        raise socket.gaierror(errors[host], "from the test's resolver")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    policy = OutboundPolicy()
    for host in ("flaky.example", "servfail.example"):
        with pytest.raises(Retryable, match=f"cannot resolve {re.escape(host)} for now"):
            policy.check_host(host, 443)
        with pytest.raises(Retryable):
            _seen(policy, f"https://{host}/x")
        with pytest.raises(Retryable):
            policy.connect(host, 587)
        with pytest.raises(Retryable), policy.session(timeout=5) as session:
            session.get(f"http://{host}/x")
    with pytest.raises(Permanent, match=r"cannot resolve nowhere\.example"):
        policy.check_host("nowhere.example", 443)


def test_the_ca_bundle_is_written_once_by_threads_at_once(tmp_path, monkeypatch):
    """Each delivery's environment asks for the CA bundle; the first ones after a start ask at once, on the
    threads of one worker's lane (found as a 'connection trouble: FileNotFoundError' attempt). Twenty new
    bundles, each asked for by eight threads at once."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the bundles are written
    for round_ in range(20):
        extra = tmp_path / f"extra-ca-{round_}.pem"
        extra.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + os.urandom(32).hex().encode() + b"\n")
        start, errors, paths = threading.Barrier(8), [], []

        def ask(extra=extra, start=start, errors=errors, paths=paths):
            start.wait()
            try:
                paths.append(ca_bundle(str(extra)))
            except OSError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(set(paths)) == 1, errors
        assert Path(paths[0]).read_bytes().endswith(extra.read_bytes())
