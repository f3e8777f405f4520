"""Google Sheets' quotas, kept by the relay: 60 reads and, apart, 60 writes a minute per user per project,
and a service account is one user however many workers use it. Each credential's reads and writes are paced
across every worker (``env.pace``), a little under the quota, so a batch of write-backs meets few 429s; a
429 waits the quota's window (Sheets sends no Retry-After) and costs no attempt. The header row and the key
column of a sheet are kept a few seconds per process, so a batch does not read them for every row."""

from __future__ import annotations

import json
import time
from typing import Any

from ..base import Environment, Pace, digest

MARGIN = 0.9
"""The share of the quota the pace uses: a request goes a little after its slot on a busy worker, and the
quota is counted by Google, not by the slots."""
KEPT_SECONDS = 10.0
"""How long a sheet's header row and key column are kept: a batch's rows share them, and a row inserted
above the keyed ones is seen within seconds."""
# per process: (API URL, credentials' user, spreadsheet, range) -> (values, when read)
_kept: dict[tuple[str, ...], tuple[list[list[Any]], float]] = {}


def user_of(credentials: dict[str, Any]) -> str:
    """Whose quota a credential's calls count against, as a digest: the service account (or the user it
    impersonates), or the OAuth client's user (its refresh token)."""
    if credentials.get("type") == "service_account":
        who = [credentials.get("client_email"), credentials.get("subject") or ""]
    else:
        who = [credentials.get("client_id"), credentials.get("refresh_token")]
    return digest(json.dumps(who))


def window_seconds(env: Environment) -> float:
    return float(env.settings.get("sheets_quota_window_seconds") or 60.0)


def pace(env: Environment, credentials: dict[str, Any], write: bool) -> None:
    """Wait for this credential's next read (or write) slot, shared by every worker; Throttled when it is
    further off than a worker holds a delivery for."""
    what = "write" if write else "read"
    limit = int(env.settings.get(f"sheets_{what}s_per_window") or 60)
    window = window_seconds(env)
    env.pace(
        Pace(
            f"sheets:{what}:{user_of(credentials)}",
            per_second=limit * MARGIN / window,
            what=f"Google Sheets' {limit} {what}s per {window:g} s per user",
        )
    )


def kept(key: tuple[str, ...]) -> list[list[Any]] | None:
    found = _kept.get(key)
    return found[0] if found and found[1] > time.monotonic() - KEPT_SECONDS else None


def keep(key: tuple[str, ...], values: list[list[Any]]) -> None:
    _kept[key] = (values, time.monotonic())


def forget(key: tuple[str, ...]) -> None:
    _kept.pop(key, None)
