"""The one reading of a ``Retry-After`` header, for every destination, the API client and the relay's
retries: delta-seconds or an HTTP-date (RFC 9110, 10.2.3), held to a ceiling."""

from __future__ import annotations

import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

CEILING_SECONDS = 3600.0
"""The longest wait a Retry-After is honoured for: a receiver answering ``Retry-After: 31536000`` would
park a delivery for a year (past its task's retention), and above ~2.5e11 s RQ's ``enqueue_in`` overflows.
An hour is the relay's longest backoff between delivery attempts (``RELAY_DELIVERY_BACKOFF_CAP_SECONDS``)."""

_DELTA = re.compile(
    r"\d+(?:\.\d+)?"
)  # digits only: float() would also take "inf", "nan" and "1e999"


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait, between 0 and CEILING_SECONDS, or None when there is no readable value. ``now``
    (epoch seconds) is the time an HTTP-date is counted from: the current time unless given."""
    text = (value or "").strip()
    if not text:
        return None
    if _DELTA.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), CEILING_SECONDS)
