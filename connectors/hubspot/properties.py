"""The relay's values in the shape each HubSpot property takes. HubSpot checks a value by its property's type:
a dropdown takes only its options' internal values (``INVALID_OPTION``), a date only midnight UTC
(``INVALID_DATE``), a number only a number. The definitions are read once per connection and object type
(``GET /crm/v3/properties/{object}``) and kept for a while in the process; a value no option fits is refused
here, before anything is written, with the property, the value and the options it takes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..base import Permanent
from .api import HubSpotApi

CACHE_SECONDS = 600.0
"""How long a process keeps an object's property definitions (a new option is seen within this long)."""
# per process: (connection key, object type) -> (read at, definitions by name)
_cache: dict[tuple[str, str], tuple[float, dict[str, Definition]]] = {}


class ValueRefused(Permanent):
    """A value its property cannot take: what was found, and what the user can change."""

    def __init__(self, found: str, fix: str):
        super().__init__(f"{found}. {fix}")
        self.found, self.fix = found, fix


@dataclass(frozen=True)
class Option:
    label: str
    value: str
    """The internal value, the one the API takes."""


@dataclass(frozen=True)
class Definition:
    name: str
    type: str
    """string, number, date, datetime, enumeration, bool, phone_number..."""
    field_type: str
    label: str
    options: tuple[Option, ...] = ()

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Definition:
        return cls(
            str(raw.get("name") or ""),
            str(raw.get("type") or "string"),
            str(raw.get("fieldType") or ""),
            str(raw.get("label") or raw.get("name") or ""),
            tuple(
                Option(str(o.get("label") or ""), str(o.get("value") or ""))
                for o in raw.get("options") or []
                if not o.get("hidden")
            ),
        )


def definitions(api: HubSpotApi, object_type: str) -> dict[str, Definition]:
    """The object type's property definitions by name (from the process's cache when fresh)."""
    key = (api.connection.key, object_type)
    cached = _cache.get(key)
    if cached and cached[0] > time.monotonic() - CACHE_SECONDS:
        return cached[1]
    answer = api.call("GET", f"/crm/v3/properties/{object_type}", params={"archived": "false"})
    found = {d.name: d for d in map(Definition.of, answer.get("results") or []) if d.name}
    _cache[key] = (time.monotonic(), found)
    return found


def forget(api: HubSpotApi, object_type: str) -> None:
    """Read the definitions again next time (HubSpot refused a value: one may have changed)."""
    _cache.pop((api.connection.key, object_type), None)


def adapt(values: dict[str, Any], known: dict[str, Definition], what: str) -> dict[str, str]:
    """``values`` by property name, each as its property takes it; Permanent, naming the property, the value
    and what it takes, for one that cannot be. ``what``: the record's object in words ("deal")."""
    adapted = {}
    for name, value in values.items():
        definition = known.get(name)
        if definition is None:
            raise ValueRefused(
                f"HubSpot: the {what} has no property {name}",
                "Create it (Settings > Properties), or map the value to one that exists (by its internal name)",
            )
        adapted[name] = _as(definition, value, what)
    return adapted


def _as(definition: Definition, value: Any, what: str) -> str:
    text = "" if value is None else str(value)
    if text == "":
        return ""  # clears any property
    kind = definition.type
    if kind == "enumeration":
        return _option(definition, text, what)
    if kind == "number":
        try:
            float(text)
        except ValueError:
            raise _mismatch(definition, text, "a number", what) from None
        return text
    if kind in ("date", "datetime"):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _mismatch(definition, text, f"a {kind}", what) from None
        when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
        # a date property takes midnight UTC only: the day, not the time
        return when.date().isoformat() if kind == "date" else when.isoformat()
    if kind == "bool":
        raise _mismatch(definition, text, "true or false", what)
    return text


def _option(definition: Definition, text: str, what: str) -> str:
    """The option whose internal value or label is ``text``, or the status word before its reason ("Failed"
    of "Failed: the prompt was empty")."""
    candidates = [text, text.split(":", 1)[0].strip()]
    if not definition.options:  # options kept elsewhere (a pipeline's stages): HubSpot judges
        return text
    for candidate in candidates:
        for option in definition.options:
            if candidate == option.value:
                return option.value
        for option in definition.options:
            if candidate.casefold() in (option.value.casefold(), option.label.casefold()):
                return option.value
    word = candidates[1][:60]
    labels = ", ".join(f'"{o.label}"' for o in definition.options) or "none"
    raise ValueRefused(
        f'HubSpot: the {what} property {definition.name} is a dropdown that does not take "{word}"; its options '
        f"are {labels}",
        f'Add an option labelled "{word}" to it (Settings > Properties), or map this value to a text property',
    )


def _mismatch(definition: Definition, text: str, takes: str, what: str) -> ValueRefused:
    return ValueRefused(
        f"HubSpot: the {what} property {definition.name} takes {takes} (its type is {definition.type}), not "
        f'"{text[:60]}"',
        "Map this value to a property of another type, or change the property's type",
    )
