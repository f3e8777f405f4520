"""The check of a HubSpot write-back connection when it is saved: the token signs in, has each scope a write-back
will need, and the records' object (``object`` in the config) has each property the mapping names, taking what
the relay writes there (a dropdown status has an option for Generating, Ready and Failed). Nothing is written."""

from __future__ import annotations

from typing import Any

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from ..records import STATUS
from . import OBJECTS, properties
from .api import HubSpotApi, TokenRefused
from .scopes import needed, noun

SCOPES_FIX = (
    "Add them to the private app (Settings > Integrations > Private apps > your app > Scopes), or to the "
    "OAuth app's scopes and install it again"
)
SAMPLES: dict[str, Any] = {
    "status": [*STATUS.values(), "Failed"],
    "error": ["The document could not be made."],
    "link": ["https://relay.example.com/files/abc"],
    "version": [1],
    "credits": [12.5],
    "updated_at": ["2026-12-07T10:30:00+00:00"],
}
"""What the relay writes to each mapped field, one of each kind of value."""


def check(target: Delivery, env: Environment) -> list[Check]:
    api = HubSpotApi(target, env)
    granted: set[str] | None = None
    try:
        api.access_token()
        granted = api.token_scopes()
    except TokenRefused as exc:
        return [
            Check(
                "signs in",
                Verdict.FAILURE,
                exc.message,
                "Copy the service key or private app's token again (or the OAuth app's client and "
                "refresh token)",
            )
        ]
    except DeliveryError:
        pass  # a kind of token whose scopes HubSpot does not tell (a service key, maybe): said below
    checks = [Check("signs in", Verdict.PASS, "HubSpot took the token")]
    object_type = _object_type(target.config)
    checks.append(_scopes(target.config, object_type, granted))
    if object_type is None:
        checks.append(
            Check(
                "the records' properties",
                Verdict.WARNING,
                "No object is set, so the properties the mapping names were not checked",
                'Set "object" (deal, contact, company, ticket or a custom object\'s type id) to check them',
            )
        )
    elif target.config.get("fields"):
        checks += _properties(api, target.config, object_type)
    return checks


def _object_type(config: dict[str, Any]) -> str | None:
    """The API's name of the object the config names ("deal" is deals; a custom object by its type id)."""
    named = str(config.get("object") or "")
    if named in OBJECTS:
        return OBJECTS[named]
    return named if "-" in named else None


def _scopes(config: dict[str, Any], object_type: str | None, granted: set[str] | None) -> Check:
    needs = needed(config, object_type)
    if granted is None:
        return Check(
            "token has each scope",
            Verdict.WARNING,
            "HubSpot did not say which scopes this token has, so they were not checked",
            "Make sure it has " + ", ".join(n.scope for n in needs),
        )
    missing = [n for n in needs if n.scope not in granted]
    if not missing:
        return Check(
            "token has each scope",
            Verdict.PASS,
            "The token has " + ", ".join(n.scope for n in needs),
        )
    return Check(
        "token has each scope",
        Verdict.FAILURE,
        "The token lacks " + "; ".join(f"{n.scope} ({n.why})" for n in missing),
        f"{SCOPES_FIX}: {', '.join(n.scope for n in missing)}",
    )


def _properties(api: HubSpotApi, config: dict[str, Any], object_type: str) -> list[Check]:
    what = noun(object_type)
    try:
        known = properties.definitions(api, object_type)
    except DeliveryError as exc:
        return [
            Check(
                "the records' properties",
                Verdict.FAILURE,
                f"The {what} properties could not be read: {exc.message}",
                "Give the token the object's read scope, and check the object's name",
            )
        ]
    checks = []
    for field, name in sorted((config.get("fields") or {}).items()):
        try:
            for sample in SAMPLES.get(field, [""]):
                properties.adapt({name: sample}, known, what)
        except properties.ValueRefused as exc:
            checks.append(Check(f"property {name} ({field})", Verdict.FAILURE, exc.found, exc.fix))
        else:
            checks.append(
                Check(
                    f"property {name} ({field})",
                    Verdict.PASS,
                    f"The {what} property {name} takes the {field} the relay writes",
                )
            )
    return checks
