"""File names and folders from a destination's templates, the same way for every file destination.

``file_name`` and ``folder`` are templates over the task's fields: ``{record_key}``, ``{format}``,
``{date}`` (the day the task finished, UTC, YYYY-MM-DD), ``{title}`` (the document's own name, without
extension), ``{turn}`` (the run's turn, from 0) and ``{task_id}``. Without a template, the name is the one
every destination had before (``deal-42-workbook-3f9a1c.xlsx``) and the folder the destination's own.

A field's value never adds a folder level: its ``/`` is replaced with the rest of the characters the
platform refuses, always by ``_``, so the same task gives the same name on every attempt. A file name
template without an extension gets the file's."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Formatter

from .base import Delivery, Document, Permanent

FIELDS = ("record_key", "format", "date", "title", "turn", "task_id")
_CONTROL = "".join(chr(c) for c in range(32)) + "\x7f"


@dataclass(frozen=True)
class Rules:
    """What a platform refuses in a file or folder name."""

    refused: str = "/\\"
    max_length: int = 255
    strip: str = " "
    """Characters a name may not start or end with."""


DEFAULT = Rules()
WINDOWS = Rules(refused='/\\"*:<>?|', strip=" .")
"""Windows' refused characters (Dropbox takes more, but a file with them does not sync to a Windows PC)."""
SHAREPOINT = Rules(refused=WINDOWS.refused + "#%", strip=" .")
"""OneDrive and SharePoint: Windows' refused characters, and # and %, which SharePoint's URLs stumble on."""


def fields(delivery: Delivery, document: Document) -> dict[str, str]:
    task = delivery.event.get("data") or {}
    finished = task.get("updated_at") or ""
    try:
        day = (
            datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
            .astimezone(UTC)
            .date()
            .isoformat()
        )
    except ValueError:
        day = datetime.now(UTC).date().isoformat()
    artifacts = (task.get("result") or {}).get("artifacts") or []
    title = str(artifacts[0].get("file_name") or "") if artifacts else ""
    turn = task.get("turn_index")
    return {
        "record_key": str(task.get("record_key") or "relay"),
        "format": str(task.get("format") or ""),
        "date": day,
        "title": title.rpartition(".")[0] or title or document.name.rpartition(".")[0],
        "turn": "" if turn is None else str(turn),
        "task_id": str(task.get("task_id") or ""),
    }


def file_name(delivery: Delivery, document: Document, rules: Rules = DEFAULT) -> str:
    template = str(delivery.config.get("file_name") or "")
    extension = document.name.rpartition(".")[2] if "." in document.name else ""
    if not template:
        return _clean(document.name, rules)
    name = _render(template, fields(delivery, document), rules)
    if extension and not name.lower().endswith(f".{extension.lower()}"):
        name = f"{name}.{extension}"
    return _clean(name, rules)


def folder(
    delivery: Delivery, document: Document, key: str = "folder", rules: Rules = DEFAULT
) -> str:
    """The folder path (``a/b``, no leading or trailing slash) from the template in ``config[key]``."""
    template = str(delivery.config.get(key) or "")
    rendered = _render(template, fields(delivery, document), rules) if template else ""
    return "/".join(_clean(part, rules) for part in rendered.split("/") if part.strip(rules.strip))


def check(template: str) -> str | None:
    """What is wrong with a template, in words; None when it is fine."""
    try:
        parsed = [
            (name, spec, conversion)
            for _, name, spec, conversion in Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        return f"not a template ({exc}); write a literal brace as {{{{ or }}}}"
    names = [name for name, _, _ in parsed]
    if any(spec or conversion for _, spec, conversion in parsed):
        return "a field takes no format (write {date}, not {date:...})"
    unknown = sorted({name for name in names if name not in FIELDS})
    if unknown:
        return f"unknown field {{{unknown[0]}}}; the fields are " + ", ".join(
            f"{{{f}}}" for f in FIELDS
        )
    return None


def free_name(name: str, taken: Callable[[str], bool], first: int = 2) -> str:
    """``name``, or the first of ``stem (2).ext``, ``stem (3).ext``... that is not ``taken``."""
    if not taken(name):
        return name
    stem, dot, ext = name.rpartition(".") if "." in name.rsplit("/", 1)[-1] else (name, "", "")
    for n in range(first, first + 999):
        if not taken(candidate := f"{stem} ({n}){dot}{ext}"):
            return candidate
    raise Permanent(f"{name} and 999 renamed copies of it exist")


def _render(template: str, values: dict[str, str], rules: Rules) -> str:
    problem = check(template)
    if problem:  # a destination saved before templates, with a brace in its folder
        raise Permanent(f"the destination's template {template!r}: {problem}")
    safe = {key: _replace(value, rules) for key, value in values.items()}
    return template.format_map(safe)


def _replace(value: str, rules: Rules) -> str:
    return re.sub(f"[{re.escape(rules.refused + _CONTROL)}]", "_", value)


def _clean(name: str, rules: Rules) -> str:
    name = _replace(name, rules)
    name = name.strip(rules.strip) or "document"
    if len(name.encode()) > rules.max_length:
        stem, dot, ext = name.rpartition(".")
        keep = rules.max_length - len(ext.encode()) - 1 if dot else rules.max_length
        name = (stem if dot else name).encode()[:keep].decode(errors="ignore") + (
            f".{ext}" if dot else ""
        )
    return name
