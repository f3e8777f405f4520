"""schemas.validate has two validators: fastjsonschema decides, jsonschema names the fields of a refusal.
They must accept and refuse the same things: where they did not, a value fastjsonschema refused (a bad
format, a trailing newline) was answered "body is invalid" without its field, and a keyword only jsonschema
knows (2020-12's) would be ignored by the one that decides. Here both run over a corpus for every
constraint in schemas/, and every keyword a schema uses is one both read alike."""

from __future__ import annotations

import json
from typing import Any

import fastjsonschema
import pytest

import schemas

SHARED_KEYWORDS = {
    # what draft 7 (fastjsonschema's newest) and 2020-12 (jsonschema's) both define, and define alike
    *("$schema", "$id", "$ref", "$defs", "title", "description", "default", "writeOnly"),
    *("type", "enum", "const", "format", "pattern", "minLength", "maxLength"),
    *("minimum", "maximum", "exclusiveMinimum", "multipleOf"),
    *("properties", "required", "additionalProperties", "propertyNames"),
    *("minProperties", "maxProperties", "items", "minItems", "maxItems", "uniqueItems"),
    *("allOf", "anyOf", "oneOf", "not", "if", "then", "else"),
}
NAMES_ANY_KEY = ("properties", "$defs", "patternProperties")

STRINGS = [
    *("", "a", "A", "a\n", " a", "a ", "ä", "😀", "x" * 300, "0", "-1", "1.5", "true", "null"),
    *("2026-12-07", "2026-13-45", "20261207", "2026-12-07T10:00:00Z", "2026-12-07 10:00"),
    *("2026-12-07T10:00:00+01:00", "https://example.com/a?b=1", "http://exa mple.com", "not a uri"),
    *(
        "mailto:x@example.com",
        "crm:deal:1",
        "crm:deal:1\n",
        "hubspot:deal:123",
        "C0123ABC",
        "#general",
    ),
    *("ovt_live_abc", "whsec_abc", "Deals/{record_key}", "../etc", "a/b", "x@example.com"),
]
NUMBERS = [0, 1, -1, 4, 8, 320, 10240, 8.0, 1.5, 0.07, 19.99, 1e308, -1e308, 10**20]
OTHERS = [True, False, None, [], {}, ["a"], {"a": 1}]


def _walk(node: Any, keywords: set[str], leaves: list[dict]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, keywords, leaves)
    elif isinstance(node, dict):
        keywords.update(node)
        if "$ref" not in node:
            leaves.append(node)
        for key, value in node.items():
            if key in NAMES_ANY_KEY:
                for subschema in value.values():
                    _walk(subschema, keywords, leaves)
            elif key not in ("enum", "const", "default", "required"):
                _walk(value, keywords, leaves)


def _corpus() -> tuple[set[str], list[dict]]:
    keywords: set[str] = set()
    leaves: list[dict] = []
    for name in schemas._all_schema_files():
        _walk(schemas.resolved(name), keywords, leaves)
    distinct = {json.dumps(leaf, sort_keys=True): leaf for leaf in leaves}  # one compile each
    return keywords, list(distinct.values())


def test_every_keyword_is_one_both_validators_read_alike():
    keywords, _ = _corpus()
    assert keywords - SHARED_KEYWORDS == set()


def _values(leaf: dict) -> list[Any]:
    found = [*leaf.get("enum", []), *([leaf["const"]] if "const" in leaf else [])]
    return [*STRINGS, *NUMBERS, *OTHERS, *found, *(f"{v}\n" for v in found if isinstance(v, str))]


def test_both_validators_accept_and_refuse_the_same_corpus():
    _, leaves = _corpus()
    disagree, tried = [], 0
    for leaf in leaves:
        schema = {k: v for k, v in leaf.items() if k not in ("$schema", "$id")}
        fast = fastjsonschema.compile(schema, use_default=False)
        slow = schemas._Validator(schema, format_checker=schemas._FORMATS)
        for value in _values(leaf):
            tried += 1
            try:
                fast(value)
                accepted = True
            except fastjsonschema.JsonSchemaException:
                accepted = False
            if accepted != slow.is_valid(value):
                disagree.append((schema.get("title") or schema, value, accepted))
    assert len(leaves) > 300 and tried > 20_000
    assert disagree == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "excel", "prompt": "x", "record_key": "crm:deal:1\n"}, "record_key"),
        ({"format": "excel", "prompt": "x", "callback_url": "not a uri"}, "callback_url"),
    ],
)
def test_a_refusal_names_its_field(body, field):
    with pytest.raises(schemas.SchemaViolation) as refused:
        schemas.validate("relay/submit-request.json", body)
    assert [error.field for error in refused.value.errors] == [field]
