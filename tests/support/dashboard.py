"""Signing in to the relay's dashboard over HTTP as a browser does: the form, its CSRF token, the cookie."""

from __future__ import annotations

import re

import httpx

ADMIN_TOKEN = "dashboard-admin-token-for-tests-5b1f0c7e9a"


def sign_in(relay, token: str = ADMIN_TOKEN, **client_options) -> tuple[httpx.Client, int]:
    """A browser-like client that posted the sign-in form; and the status that answered it."""
    client = httpx.Client(**{"base_url": relay.url, **client_options})
    page = client.get("/dashboard/login").text
    csrf_token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/dashboard/login", data={"token": token, "csrf_token": csrf_token})
    return client, answer.status_code


def signed_in_client(relay) -> httpx.Client:
    client, status = sign_in(relay)
    assert status == 302, "the sign-in was refused"
    return client
