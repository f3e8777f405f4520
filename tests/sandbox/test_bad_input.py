"""Bad input never gets a 500: every error is JSON and names the problem."""

from __future__ import annotations

import pytest


def error_of(response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_missing_key_is_401(sandbox):
    with sandbox.client() as client:
        response = client.post(
            "/excel/generate", json={"prompt": "x"}, headers={"Authorization": ""}
        )
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_wrong_key_is_401(sandbox):
    with sandbox.client(api_key="ovt_test_wrong") as client:
        response = client.get("/runs")
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"prompt": 42}, "prompt", "type string"),
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "   "}, "prompt", "invalid"),
        ({}, "prompt", "required"),
        ({"prompt": "x", "colour": "red"}, "colour", "not a known field"),
        ({"prompt": "x", "async": "yes"}, "async", "boolean"),
        ({"prompt": "x", "run_id": "run_nope"}, "run_id", "invalid"),
        ({"prompt": "x", "webhook_url": "ftp://example.com"}, "webhook_url", "invalid"),
        ({"prompt": "x" * 20_001}, "prompt", "at most 20000"),
    ],
)
def test_invalid_bodies_name_the_field(sandbox, body, field, fragment):
    with sandbox.client() as client:
        response = client.post("/excel/generate", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["field"] == field
    assert fragment in error["message"]
    assert len(response.text) < 2000  # a huge prompt is never echoed back


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_400(sandbox, raw):
    with sandbox.client() as client:
        response = client.post(
            "/word/generate", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_body_over_one_mebibyte_is_413(sandbox):
    with sandbox.client() as client:
        response = client.post(
            "/excel/generate", content=b'{"prompt": "' + b"a" * (1024 * 1024) + b'"}'
        )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_entity_too_large"


def test_unknown_endpoint_and_method_are_json(sandbox):
    with sandbox.client() as client:
        missing = client.post("/pdf/generate", json={"prompt": "x"})
        wrong_method = client.get("/excel/generate")
        unknown_kind = client.post("/text/poem", json={"prompt": "x"})
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert (
        wrong_method.status_code == 405 and error_of(wrong_method)["code"] == "method_not_allowed"
    )
    assert unknown_kind.status_code == 404 and "summary" in error_of(unknown_kind)["kinds"]


def test_unknown_ids_are_404(sandbox):
    with sandbox.client() as client:
        task = client.get("/tasks/task_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        run = client.get("/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        resume = client.post(
            "/excel/generate", json={"prompt": "x", "run_id": "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"}
        )
    assert task.status_code == run.status_code == resume.status_code == 404
    assert error_of(resume)["field"] == "run_id"


def test_another_orgs_ids_are_404(sandbox):
    with sandbox.client() as client:
        created = client.post("/excel/generate", json={"prompt": "Sales", "async": True}).json()
    other = sandbox.new_org()
    with sandbox.client(api_key=other["api_key"]) as client:
        assert client.get(f"/tasks/{created['task_id']}").status_code == 404
        assert client.get(f"/runs/{created['run_id']}").status_code == 404
        assert client.post(f"/tasks/{created['task_id']}/cancel").status_code == 404
        resumed = client.post(
            "/excel/generate", json={"prompt": "more", "run_id": created["run_id"]}
        )
        assert resumed.status_code == 404


def test_rate_limit_answers_429_with_retry_after(make_sandbox):
    # the window opens at the key's first call and lasts an hour: four calls always fall in one window
    sandbox = make_sandbox(rate_limit_requests=3, rate_limit_window_seconds=3600)
    with sandbox.client() as client:
        answers = [client.get("/runs") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert error_of(answers[-1])["code"] == "rate_limited"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 3600
    assert answers[-1].headers["X-RateLimit-Reset"] == answers[-1].headers["Retry-After"]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    # a different key has its own budget
    other = sandbox.new_org()
    with sandbox.client(api_key=other["api_key"]) as client:
        assert client.get("/runs").status_code == 200
    # and the window passes
    sandbox.advance(3600)
    with sandbox.client() as client:
        assert client.get("/runs").status_code == 200


def test_error_rate_knob_answers_503_with_retry_after(make_sandbox):
    sandbox = make_sandbox(error_rate=1.0)
    with sandbox.client() as client:
        response = client.get("/runs")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
