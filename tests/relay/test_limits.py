"""Rate limits per API key (shared by every web process through Redis) and request size limits on
every endpoint: clear JSON errors, and nothing stored."""

from __future__ import annotations

import httpx

from app.web import BATCH_BODY_BYTES, MAX_BODY_BYTES
from app.web.openapi import ROUTES


def test_rate_limit_per_api_key_answers_429_with_retry_after(make_relay, reliability):
    relay = make_relay(worker=False, rate_limit="5 per minute")
    _, other_key = relay.new_tenant("other")
    with relay.client() as client:
        answers = [client.get("/v1/me") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        limited = answers[-1]
        assert limited.json()["error"]["code"] == "too_many_requests"
        assert int(limited.headers["Retry-After"]) > 0
        # the whole API, per key (an unknown task too)
        assert client.get("/v1/tasks/tsk_01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 429
    with relay.client(other_key) as other:
        assert other.get("/v1/me").status_code == 200  # another key has its own budget
    assert httpx.get(relay.url + "/healthz").status_code == 200  # not for health checks
    reliability(
        fault="one API key over its rate limit (5 per minute in the test)",
        tried=7,
        lost=0,
        duplicated="-",
        notes="429 with Retry-After from the 6th call; another key unaffected",
    )


def test_the_limit_is_shared_across_web_processes(make_relay):
    """Two web apps (as two gunicorn processes would be) count against the same Redis."""
    from app.web import create_app
    from tests.support.servers import ServedApp

    relay = make_relay(worker=False, rate_limit="4 per minute")
    second = ServedApp(create_app(config=relay.config)).start()
    try:
        headers = {"Authorization": f"Bearer {relay.api_key}"}
        codes = [
            httpx.get(url + "/v1/me", headers=headers).status_code
            for url in (relay.url, second.url, relay.url, second.url, relay.url)
        ]
        assert codes == [200, 200, 200, 200, 429]
    finally:
        second.stop()


def test_every_endpoint_refuses_a_body_over_its_limit(make_relay, reliability):
    relay = make_relay(worker=False)
    posts = [r for r in ROUTES if r.method == "POST"]
    for route in posts:
        path = route.path.replace("{", "").replace("}", "")
        answer = httpx.post(
            relay.url + path,
            content=b"x" * (_limit(route.path) + 1),
            headers={
                "Authorization": f"Bearer {relay.api_key}",
                "Content-Type": "application/json",
            },
        )
        assert answer.status_code == 413, (route.path, answer.text)
        assert (
            answer.headers["content-type"] == "application/json"
            and answer.json()["error"]["message"]
        )
    reliability(
        fault="a body over 1 MiB (16 MiB for a batch) to every POST endpoint",
        tried=len(posts),
        lost=0,
        duplicated="-",
        notes="413 with a JSON error before any work, on all of them",
    )


def test_every_endpoint_refuses_a_chunked_body_over_its_limit(make_relay):
    """With no Content-Length to look at first, the body is read up to the limit and one byte past it:
    over it is 413 as well, not a body cut at 1 MiB and then refused as bad JSON."""
    relay = make_relay(worker=False)
    for route in (r for r in ROUTES if r.method == "POST"):
        path = route.path.replace("{", "").replace("}", "")
        body = b'{"pad": "' + b"x" * _limit(route.path) + b'"}'
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        answer = httpx.post(
            relay.url + path,
            content=chunks,
            headers={
                "Authorization": f"Bearer {relay.api_key}",
                "Content-Type": "application/json",
            },
        )
        assert answer.status_code == 413, (route.path, answer.status_code, answer.text[:200])
        assert answer.json()["error"]["code"] == "payload_too_large"


def _limit(path: str) -> int:
    """1 MiB everywhere, but for a batch's rows (app/web/__init__.py)."""
    return BATCH_BODY_BYTES if path == "/v1/batches" else MAX_BODY_BYTES
