"""JSON Schemas shared by the relay and the sandbox, and the one validator both use.

The schema files are the single source of truth for request bodies and event payloads: validation,
the OpenAPI document and the no-code field lists are all derived from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from fastjsonschema.draft04 import DOLLAR_FINDER
from fastjsonschema.draft07 import CodeGeneratorDraft07
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

_PREVIEW = 60  # never echo more than this much of a user's value back in an error


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class SchemaViolation(Exception):
    """Raised with every problem found, each naming the field it concerns."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


@cache
def _all_schema_files() -> dict[str, dict[str, Any]]:
    root = resources.files(__name__)
    found: dict[str, dict[str, Any]] = {}
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith("_"):
            for item in folder.iterdir():
                if item.name.endswith(".json"):
                    found[f"{folder.name}/{item.name}"] = json.loads(item.read_text())
    return found


@cache
def _registry() -> Registry:
    pairs = [(name, Resource.from_contents(doc)) for name, doc in _all_schema_files().items()]
    return Registry().with_resources(pairs).crawl()  # crawled once, not on every $ref lookup


@cache
def load(name: str) -> dict[str, Any]:
    """The schema document named like ``upstream/generate-request.json``."""
    return _all_schema_files()[name]


@cache
def resolved(name: str) -> dict[str, Any]:
    """The schema with references to our other files replaced by their contents (for generators)."""
    return _inlined(load(name))


# Two validators, one set of rules: fastjsonschema decides (compiled: ~20x quicker on a webhook's event),
# jsonschema names the fields of a refusal. Where they read a keyword differently, jsonschema is given
# fastjsonschema's reading: its format regexes (jsonschema checks no format unless told, and "uri" only
# with an extra package) and its patterns ("$" is the end of the string, not before a final newline).
# tests/test_schemas_agree.py runs both over a corpus for every constraint in schemas/.
_FORMATS = FormatChecker(formats=())
for _format, _regex in CodeGeneratorDraft07.FORMAT_REGEXS.items():
    _FORMATS.checks(_format)(
        lambda value, found=re.compile(_regex).match: (
            not isinstance(value, str) or bool(found(value))
        )
    )


@cache
def _fast_pattern(pattern: str) -> re.Pattern:
    return re.compile(DOLLAR_FINDER.sub(r"\\Z", pattern))


def _pattern(validator, pattern: str, instance: Any, schema: dict):
    if validator.is_type(instance, "string") and not _fast_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def _validator(name: str) -> Draft202012Validator:
    # $refs between our files are inlined once: resolving them per validation costs more than the rest
    return _Validator(resolved(name), registry=_registry(), format_checker=_FORMATS)


def _inlined(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        name, _, pointer = ref.partition("#") if isinstance(ref, str) else ("", "", "")
        if name in _all_schema_files():
            target: Any = load(name)
            # "file.json#/properties/x": a part of another file
            for part in filter(None, pointer.split("/")):
                target = target[part]
            merged = {k: v for k, v in target.items() if k not in ("$id", "$schema")}
            return _inlined({**merged, **{k: v for k, v in node.items() if k != "$ref"}})
        return {k: _inlined(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_inlined(v) for v in node]
    return node


@cache
def _fast_check(name: str) -> Callable[[Any], Any]:
    """fastjsonschema compiles the schema to Python: ~10x quicker than jsonschema on valid input, which
    is nearly all of it. jsonschema is still what describes the problems when there are any."""
    schema = {k: v for k, v in resolved(name).items() if k not in ("$schema", "$id")}
    return fastjsonschema.compile(schema, use_default=False)


def warm() -> None:
    """Compile every schema now: done lazily, the first request a new server process takes would wait
    ~0.1 s per schema it meets (a Slack command's first answer would take half a second)."""
    for name in _all_schema_files():
        _fast_check(name)
    _registry()


def validate(name: str, instance: Any) -> None:
    """Check ``instance`` against schema ``name``; raise SchemaViolation naming each bad field."""
    try:
        _fast_check(name)(instance)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    errors = sorted(
        _validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))
    )
    if errors:
        raise SchemaViolation([problem for error in errors for problem in _describe(error)])
    # the two validators disagree: be safe
    raise SchemaViolation([FieldError("body", "is invalid")])


def _path(error: ValidationError, leaf: str | None = None) -> str:
    parts = [str(p) for p in error.absolute_path]
    if leaf is not None:
        parts.append(leaf)
    return ".".join(parts) or "body"


def _describe(error: ValidationError) -> list[FieldError]:
    kind, spec, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        match = re.match(r"'(.+)' is a required property", error.message)
        leaf = match.group(1) if match else "?"
        return [FieldError(_path(error, leaf), "is required")]
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(set(value) - known) if isinstance(value, dict) else []
        return [FieldError(_path(error, key), "is not a known field") for key in extra]
    field = _path(error)
    if isinstance(error.schema, dict) and error.schema.get("writeOnly"):
        return [FieldError(field, "is not valid (a secret: its value is not repeated here)")]
    messages = {
        "type": lambda: f"must be of type {_join(spec)}",
        "minLength": lambda: (
            "must not be empty" if spec == 1 else f"must be at least {spec} characters"
        ),
        "maxLength": lambda: f"must be at most {spec} characters (got {len(value)})",
        "pattern": lambda: f"has an invalid value {_preview(value)}",
        "format": lambda: f"must be a {spec} (got {_preview(value)})",
        "enum": lambda: f"must be one of {_join(spec)} (got {_preview(value)})",
        "const": lambda: f"must be {spec!r}",
        "minimum": lambda: f"must be at least {spec}",
        "maximum": lambda: f"must be at most {spec}",
        "minItems": lambda: f"must have at least {spec} items",
        "maxItems": lambda: f"must have at most {spec} items",
        "maxProperties": lambda: f"must have at most {spec} entries",
        "anyOf": lambda: _any_of(spec),
    }
    describe = messages.get(str(kind))
    return [FieldError(field, describe() if describe else "is invalid")]


def _any_of(options: list) -> str:
    """anyOf of required fields (a saved id, or an inline kind): say which fields would do."""
    names = [name for option in options for name in option.get("required", [])]
    return f"needs one of: {', '.join(names)}" if names else "is invalid"


def _join(spec: Any) -> str:
    return ", ".join(map(str, spec)) if isinstance(spec, list) else str(spec)


def _preview(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return repr(text if len(text) <= _PREVIEW else text[:_PREVIEW] + "...")
