"""/openapi.json: a valid OpenAPI 3.1 document that covers every route, and a schemathesis run against
the live app that finds no 5xx and no answer that breaks the document."""

from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from app.web import intake

SKIPPED = {"/dashboard", "/sign-in", "/static"}  # HTML pages for people, and their sign-in


@pytest.fixture
def live_relay(make_relay):
    # generated `wait`s would hold each request 25 s
    return make_relay(worker=False, max_wait_seconds=0)


def test_document_is_valid_and_covers_every_route(live_relay):
    document = httpx.get(live_relay.url + "/openapi.json").json()
    validate(document)
    assert document["openapi"].startswith("3.1") and document["servers"] == [
        {"url": live_relay.config.public_url}
    ]
    served = {
        (method, re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in live_relay.web.app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if not any(rule.rule.startswith(prefix) for prefix in SKIPPED)
    }
    # mounted in front of Flask (app/web/intake.py)
    served.add(("POST", intake.PREFIX + "/{token}"))
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert served == documented


def test_no_5xx_and_every_answer_matches_the_document(live_relay, reliability):
    """Every operation, with generated valid and invalid input, through schemathesis' default checks."""
    loaded = schemathesis.openapi.from_url(live_relay.url + "/openapi.json")
    # valid input may be answered 422: the documented answer to an Idempotency-Key reused with another body,
    # which generated cases do now and then (the same short key twice)
    accepted = loaded.config.checks.positive_data_acceptance
    accepted.expected_statuses = [*accepted.expected_statuses, "422"]
    headers = {"Authorization": f"Bearer {live_relay.api_key}"}
    failures: dict[str, str] = {}
    calls: list[int] = []
    # /readyz answers a documented 503 here on purpose: no worker runs in this stack
    operations = [
        op for result in loaded.get_all_operations() if (op := result.ok()).path != "/readyz"
    ]
    assert len(operations) > 25
    for operation in operations:
        # a batch's rows are checked against its template (a column a row lacks, a template that renders empty),
        # which no JSON Schema can say: a generated batch may be answered its documented 400 listing the rows.
        # A destination is checked against its platform before it is saved: a generated one (a bucket, a
        # channel, a host that does not exist) is answered its documented 400 naming the failed check.
        refused_by_more_than_a_schema = (
            ("POST", "/v1/batches"),
            ("POST", "/v1/destinations"),
            ("PATCH", "/v1/destinations/{destination_id}"),
        )
        excluded = (
            [schemathesis.checks.positive_data_acceptance]
            if (operation.method.upper(), operation.path) in refused_by_more_than_a_schema
            else []
        )

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case):
            calls.append(1)
            case.call_and_validate(headers=headers, excluded_checks=excluded)  # noqa: B023 - run at once, below

        try:
            run()
        except Exception as exc:  # collect them all: one run shows every operation that breaks
            failures[operation.label] = str(exc)[:1500]
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())
    assert len(calls) > 10 * len(operations)  # generated cases really ran
    reliability(
        fault=f"schemathesis: generated valid and invalid requests to all {len(operations)} operations",
        tried=len(calls),
        lost=0,
        duplicated="-",
        notes="no 5xx; every answer matches /openapi.json (status, content type, schema)",
    )
