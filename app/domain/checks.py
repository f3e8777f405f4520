"""Checks of a destination or write-back connection, the way a no-code tool tests a connection: the kind
signs in and verifies, without delivering a document, what a delivery will need, and says in plain words
what passed, what will bite later and what to fix. Run when a destination is saved and on demand."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from app.domain import connector_env
from app.stores.destinations import DestinationStore, SavedDestination
from connectors import registry
from connectors.base import Check, Delivery, DeliveryError, Verdict

log = logging.getLogger(__name__)


class Needs(connector_env.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    destinations: DestinationStore


_WORST_FIRST = (Verdict.FAILURE, Verdict.WARNING, Verdict.PASS)
AT_ONCE = 8
"""Saved destinations checked at once: each check mostly waits on its platform."""


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """A failure if any failed, else a warning if any warned, else a pass (also for none)."""
    found = set(verdicts)
    return next((v for v in _WORST_FIRST if v in found), Verdict.PASS)


@dataclass(frozen=True)
class Report:
    """What the checks of one destination found."""

    kind: str
    checks: tuple[Check, ...]

    @property
    def verdict(self) -> Verdict:
        """The worst of the checks."""
        return worst(check.verdict for check in self.checks)

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAILURE

    def view(self) -> dict[str, Any]:
        """As the API, the CLI and the dashboard show it."""
        return {
            "verdict": str(self.verdict),
            "checks": [
                {
                    "name": check.name,
                    "verdict": str(check.verdict),
                    "message": check.message,
                    "fix": check.fix,
                }
                for check in self.checks
            ],
        }


def run(ctx: Needs, tenant_id: str, kind: str, config: dict[str, Any]) -> Report:
    """Check a destination of ``kind`` with ``config`` (secrets revealed) for ``tenant_id``."""
    target = Delivery("check", kind, config, event={}, tenant_id=tenant_id)
    env = connector_env.environment(ctx, save_state=lambda _id, _state: None)
    try:
        checks = registry.KINDS[kind].check(target, env)
    except DeliveryError as exc:  # the kind's own words, as a delivery would have said it
        checks = [Check("the check could be made", Verdict.FAILURE, exc.message)]
    except Exception as exc:  # a bug in a check: said, not a 500
        log.exception("the check of a %s destination failed", kind)
        checks = [
            Check(
                "the check could be made",
                Verdict.FAILURE,
                f"the check stopped on an error in the relay ({type(exc).__name__})",
                "Try again; if it keeps failing, the relay's log has the details.",
            )
        ]
    return Report(kind, tuple(checks))


def run_saved(
    ctx: Needs, tenant_id: str, saved: list[SavedDestination]
) -> list[tuple[SavedDestination, Report]]:
    """Each of a tenant's saved destinations checked, several at once, in the order given."""

    def one(destination: SavedDestination) -> Report:
        config = ctx.destinations.config(destination, reveal=True)
        return run(ctx, tenant_id, destination.kind, config)

    if not saved:
        return []
    with ThreadPoolExecutor(min(AT_ONCE, len(saved)), thread_name_prefix="check") as pool:
        return list(zip(saved, pool.map(one, saved), strict=True))
