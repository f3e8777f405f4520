"""Prometheus metrics (prometheus_client). Under gunicorn and with workers on the same host, every process
writes to PROMETHEUS_MULTIPROC_DIR and /metrics adds them up; queue depths are read from Redis when
scraped, by functions the web service hands in. Without that variable (tests, one process) the process's
own registry is served."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from redis.exceptions import RedisError

WEBHOOKS = Counter(
    "relay_webhooks_total",
    "Upstream webhooks received, by outcome "
    "(accepted, duplicate, rejected_signature, rejected_body, rejected_token).",
    ["outcome"],
)
DELIVERY_ATTEMPTS = Counter(
    "relay_delivery_attempts_total",
    "Delivery attempts by destination kind and outcome (delivered, retry, dead).",
    ["kind", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "relay_delivery_seconds",
    "Duration of one delivery attempt.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
UPSTREAM_SECONDS = Histogram(
    "relay_upstream_request_seconds",
    "Latency of calls to the Overten API.",
    ["method", "endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UPSTREAM_ERRORS = Counter(
    "relay_upstream_errors_total",
    "Calls to the Overten API that failed, by reason (transport, 429, 5xx, 4xx).",
    ["endpoint", "reason"],
)
SLACK_COMMANDS = Counter(
    "relay_slack_commands_total", "Slash commands answered, by verb.", ["verb"]
)
STORAGE_ERRORS = Counter(
    "relay_storage_errors_total",
    "Redis refused or could not be reached, by kind (out_of_memory, "
    "read_only, unreachable, loading, not_persisting, other) and by the part that met it (web, "
    "worker, intake-reader, lane-reader, scheduler, ...).",
    ["kind", "where"],
)
RETENTION_REMOVED = Counter(
    "relay_retention_removed_total",
    "What the retention sweep removed, by kind (task, "
    "delivery, dead_letter, event, audit_entry, intake_entry, lane_entry, consumer).",
    ["kind"],
)
AUDIT_ENTRIES = Counter(
    "relay_audit_entries_total",
    "Audit log entries, by action (destination.created, budget.set, session.signed_in, ...) and result "
    "(ok: the change was made; refused: the caller was answered an error).",
    ["action", "result"],
)
AUDIT_UNWRITTEN = Counter(
    "relay_audit_unwritten_total",
    "Audit entries Redis refused to store (logged with their fields): alert when it grows.",
)

_IDS = re.compile(r"/(?:run|task|tsk|dlv|dst|hook|evt)_[0-9A-Za-z]+")


def endpoint_label(path: str) -> str:
    """/runs/run_01H.../export -> /runs/{id}/export: one label per route, not per document."""
    return _IDS.sub("/{id}", path.split("?", 1)[0])


@dataclass(frozen=True)
class Gauge:
    """A gauge read when /metrics is scraped: ``read`` gives its value, or one value per ``label`` value."""

    name: str
    help: str
    read: Callable[[], float | Mapping[str, float]]
    label: str = ""


class ReadAtScrape(Collector):
    """Gauges whose values live in Redis (waiting work, dead letters), read by the functions handed in, so this
    module knows nothing of the stores it measures."""

    def __init__(self, gauges: list[Gauge]):
        self._gauges = gauges

    def collect(self):
        """Nothing when Redis cannot be read: /metrics still serves every process's counters (among them
        relay_storage_errors_total) while Redis is gone."""
        try:
            families = [self._family(gauge) for gauge in self._gauges]
        except RedisError:
            families = []
        yield from families

    @staticmethod
    def _family(gauge: Gauge) -> GaugeMetricFamily:
        value = gauge.read()
        if not isinstance(value, Mapping):
            return GaugeMetricFamily(gauge.name, gauge.help, value=value)
        family = GaugeMetricFamily(gauge.name, gauge.help, labels=[gauge.label])
        for label, number in value.items():
            family.add_metric([label], number)
        return family


def exposition(gauges: list[Gauge]) -> tuple[bytes, str]:
    """The /metrics body: every process's metrics (multiprocess mode) or this one's, plus ``gauges``."""
    processes = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # only in multiprocess mode: it reads that directory
        from prometheus_client import (
            multiprocess,
        )

        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    scraped = CollectorRegistry()
    scraped.register(ReadAtScrape(gauges))
    return generate_latest(processes) + generate_latest(scraped), CONTENT_TYPE_LATEST
