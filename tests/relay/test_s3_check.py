"""The check of an S3 destination (app.domain.checks.run) against moto behind the stricter proxy: a test
object put, read, a missing key looked for, a multipart upload started, listed and aborted, the test object
deleted; each permission the policy lacks is a failure or a warning that says what is lost."""

from __future__ import annotations

import pytest

from app.domain import checks
from connectors.base import Verdict
from tests.relay.test_s3_delivery import destination, objects
from tests.relay.test_s3_limits import LEAST_PRIVILEGE


@pytest.fixture
def check(make_relay, moto):
    relay = make_relay(worker=False)
    return lambda **config: checks.run(
        relay.ctx,
        relay.tenant_id,
        "s3",
        destination(moto.url, **{"bucket": moto.bucket, **config})["config"],
    )


def named(report) -> dict:
    return {c.name: c for c in report.checks}


def test_full_permissions_pass_and_leave_nothing_behind(check, moto):
    report = check(prefix="deals/{record_key}")
    assert report.verdict is Verdict.PASS, report.view()
    assert len(report.checks) == 5
    assert objects(moto) == {}, "the test object was deleted"
    assert moto.s3.list_multipart_uploads(Bucket=moto.bucket).get("Uploads", []) == []
    [put] = [what for what, _ in moto.answered if what.startswith("PUT ")]
    assert put.startswith(f"PUT /{moto.bucket}/deals/.relay-check-"), (
        "under the prefix's fixed part"
    )


def test_least_privilege_warns_what_is_lost_without_list_bucket(check, moto):
    moto.allow = LEAST_PRIVILEGE
    report = check()
    assert report.verdict is Verdict.WARNING, report.view()
    warned = {c.name: c for c in report.checks if c.verdict is Verdict.WARNING}
    assert set(warned) == {
        "tells a missing key (s3:ListBucket)",
        "removes its test object (s3:DeleteObject)",
    }
    listing = warned["tells a missing key (s3:ListBucket)"]
    assert "403" in listing.message and "If-None-Match" in listing.message
    assert f"s3:ListBucket on arn:aws:s3:::{moto.bucket}" in listing.fix


def test_a_read_only_key_fails_and_names_the_permission(check, moto):
    moto.allow = frozenset({"s3:GetObject", "s3:ListBucket"})
    report = check()
    [put] = report.checks
    assert report.failed and put.name == "the bucket takes a put (s3:PutObject)"
    assert "s3:PutObject" in put.message and put.fix.startswith("Grant s3:PutObject")


def test_a_missing_bucket_fails(check, moto):
    report = check(bucket="no-such-bucket-here")
    [put] = report.checks
    assert report.failed and "does not exist" in put.message and "Create the bucket" in put.fix


def test_temporary_credentials_warn_that_they_end(check):
    report = check(session_token="FwoGZXIvYXdzEBY")
    assert named(report)["the credentials last"].verdict is Verdict.WARNING
    assert "FwoGZXIvYXdzEBY" not in str(report.view())


def test_a_legacy_s3_compatible_store_passes(check, moto):
    """A store that refuses botocore's default checksums takes the check's calls (checksums only when
    required to a custom endpoint)."""
    moto.legacy = True
    report = check()
    assert report.verdict is Verdict.PASS, report.view()
    assert moto.refused == []
