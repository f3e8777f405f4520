"""Turns a prompt into a deterministic plan: a title, a table of plausible figures, a few bullets.

There is no language model: the same prompt always gives the same document, which makes the sandbox
useful in tests, while the figures still look like what the prompt asked for.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

_FILLER = {
    "a",
    "an",
    "the",
    "now",
    "please",
    "create",
    "build",
    "make",
    "add",
    "generate",
    "write",
    "with",
    "for",
    "and",
    "of",
    "to",
    "in",
    "on",
    "by",
    "new",
    "me",
    "us",
    "our",
    "my",
    "that",
    "this",
}
_ROW_SETS = {
    ("region", "sales", "territor", "market"): ["North", "South", "East", "West", "Central"],
    ("product", "sku", "catalog"): ["Starter", "Standard", "Professional", "Enterprise", "Add-ons"],
    ("team", "department", "headcount", "hiring"): [
        "Engineering",
        "Sales",
        "Marketing",
        "Support",
        "Finance",
    ],
    ("cost", "expense", "budget", "spend"): ["Payroll", "Rent", "Software", "Travel", "Marketing"],
    ("revenue", "income", "forecast", "model", "financial"): [
        "Revenue",
        "COGS",
        "Gross profit",
        "Opex",
        "EBITDA",
    ],
}
_DEFAULT_ROWS = ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]


@dataclass(frozen=True)
class Plan:
    title: str
    heading: str
    columns: list[str]
    rows: list[tuple[str, list[int]]]
    bullets: list[str]


def strip_directives(prompt: str) -> str:
    return re.sub(r"\[\[[^\]]*\]\]", "", prompt).strip()


def make_plan(prompt: str, turn: int) -> Plan:
    text = strip_directives(prompt) or "Untitled"
    rng = random.Random(hashlib.sha256(f"{turn}:{text}".encode()).digest())
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'&-]*", text)
    keywords = [w for w in words if w.lower() not in _FILLER] or ["Document"]
    title = " ".join(map(_capitalize, keywords[:7]))
    heading = " ".join(map(_capitalize, keywords[:3]))[:28].strip() or "Sheet"
    columns = _columns(text.lower())
    rows = [(name, _series(rng, len(columns))) for name in _row_names(text.lower())]
    bullets = [
        f"{name}: {values[-1]:,} in {columns[-1]}, {_change(values)} since {columns[0]}"
        for name, values in rows[:3]
    ]
    return Plan(title=title, heading=heading, columns=columns, rows=rows, bullets=bullets)


def _capitalize(word: str) -> str:
    if word.isupper():
        return word
    if re.fullmatch(r"[a-z]{1,3}\d+", word):  # fy26, q3: codes read better in capitals
        return word.upper()
    return word.capitalize()


def _columns(lowered: str) -> list[str]:
    years = re.search(r"fy\s?(\d{2})", lowered)
    if years:
        start = int(years.group(1))
        return [f"FY{(start + i) % 100:02d}" for i in range(5)]
    if "month" in lowered:
        return list(_MONTHS)
    return ["Q1", "Q2", "Q3", "Q4"]


def _row_names(lowered: str) -> list[str]:
    for triggers, names in _ROW_SETS.items():
        if any(t in lowered for t in triggers):
            return names
    return _DEFAULT_ROWS


def _series(rng: random.Random, count: int) -> list[int]:
    value = rng.randint(80, 400) * 1000
    series = []
    for _ in range(count):
        series.append(value)
        value = int(value * rng.uniform(0.95, 1.18)) // 100 * 100
    return series


def _change(values: list[int]) -> str:
    pct = (values[-1] - values[0]) / values[0] * 100
    return f"{pct:+.0f}%"
