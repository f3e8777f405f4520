"""The Environment a connector works in, for a delivery (app.work.delivering) or a check of a destination
(app.domain.checks): outbound requests only through the outbound policy, paces shared by every process."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import lru_cache
from typing import Protocol

import httpx

from app.core.config import RelayConfig
from app.core.outbound import OutboundPolicy, ca_bundle
from app.domain import pacing
from connectors.base import Environment, Pace, Throttled


class Needs(pacing.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    config: RelayConfig


# per process: pooled connections
_clients: dict[tuple[OutboundPolicy, float], httpx.Client] = {}


def _pooled_client(policy: OutboundPolicy, timeout: float = 30.0):
    """The process's shared client for this policy and timeout; not closed after each use."""
    key = (policy, timeout)
    if key not in _clients:
        _clients[key] = policy.client(timeout=timeout)
    return nullcontext(_clients[key])


@lru_cache(maxsize=8)
def _policy(allow: str, ca_file: str) -> OutboundPolicy:
    """The outbound policy for RELAY_OUTBOUND_ALLOW and RELAY_OUTBOUND_CA_FILE, made once per process."""
    return OutboundPolicy(allow, ca_file=ca_file)


def environment(ctx: Needs, save_state: Callable[[str, dict], None]) -> Environment:
    """The services a connector gets: the outbound policy's clients and SDK transports, the shared pace
    schedules, the platforms' URLs and limits from the config; ``save_state`` keeps an attempt's progress."""
    config = ctx.config
    policy = _policy(config.outbound_allow, config.outbound_ca_file)

    def http(timeout: float = 30.0):
        return _pooled_client(policy, timeout)

    def pace(schedule: Pace) -> None:
        slot = pacing.take_within(ctx, schedule, pacing.HOLD_SECONDS)
        if slot.at > slot.now + pacing.HOLD_SECONDS:
            raise Throttled(f"waiting for {schedule.what or 'a free slot'}", retry_after=slot.wait)
        time.sleep(slot.wait)

    settings = {
        "public_url": config.public_url,
        "folder_roots": config.folder_roots,
        "folder_tenant_roots": config.folder_tenant_roots,
        "slack_api_url": config.slack_api_url,
        "slack_files_per_minute": config.slack_files_per_minute,
        "slack_messages_per_second": config.slack_messages_per_second,
        "drive_api_url": config.drive_api_url,
        "drive_token_url": config.drive_token_url,
        "google_token_uris": config.google_token_uris,
        "hubspot_api_url": config.hubspot_api_url,
        "hubspot_calls_per_window": config.hubspot_calls_per_window,
        "hubspot_window_seconds": config.hubspot_window_seconds,
        "hubspot_timeout_seconds": config.hubspot_timeout_seconds,
        "airtable_api_url": config.airtable_api_url,
        "airtable_backoff_seconds": config.airtable_backoff_seconds,
        "airtable_requests_per_second": config.airtable_requests_per_second,
        "airtable_token_requests_per_second": config.airtable_token_requests_per_second,
        "airtable_private_attachments": config.airtable_private_attachments,
        "sheets_api_url": config.sheets_api_url,
        "sheets_reads_per_window": config.sheets_reads_per_window,
        "sheets_writes_per_window": config.sheets_writes_per_window,
        "sheets_quota_window_seconds": config.sheets_quota_window_seconds,
        "graph_api_url": config.graph_api_url,
        "graph_login_url": config.graph_login_url,
        "graph_upload_busy_seconds": config.graph_upload_busy_seconds,
        "dropbox_api_url": config.dropbox_api_url,
        "dropbox_content_url": config.dropbox_content_url,
        "ca_bundle": ca_bundle(config.outbound_ca_file),
        "email_attach_max_bytes": config.email_attach_max_bytes,
        "email_deferred_retry_seconds": config.email_deferred_retry_seconds,
        "check_url": policy.check,
        "check_host": policy.check_host,
        # the platforms' SDKs: no redirects, each connection to a checked address
        "session": policy.session,
        "pin_pools": policy.pin_pools,
        "connect": policy.connect,
    }
    return Environment(http=http, save_state=save_state, pace=pace, settings=settings)
