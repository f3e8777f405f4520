"""A batch's prompts rendered from the tenant's template, inside a budget.

A template is code a tenant wrote: two nested loops can run for good and ``'x' * 10**9`` can take the
memory of the process that renders it. So every batch renders in a Python process of its own (started
afresh, not forked from a threaded web process), with a wall-clock budget and a memory ceiling; past
either it is killed and the row it had reached is at fault. Inside, Jinja2's sandbox
refuses unsafe attributes, each prompt is read as it is produced and refused past the API's 20,000
characters, and the batch's prompts together are refused past their own total. Any fault of the template
(``1/0``, a type error, a refused attribute) is a fault of its row, never an error of the relay."""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

log = logging.getLogger(__name__)

PROMPT_LIMIT = 20_000
"""The API's limit on one prompt, in characters (schemas/upstream/generate-request.json)."""
_MESSAGE = 200  # an exception's text quoted back, at most
_UNDEFINED = re.compile(r"'([^']+)' is undefined")
_NOT_A_NAME = re.compile(r"\W+")
UNDEFINED = "undefined"
"""A fault's message when the template names a column the row lacks (the fault's column): the caller words it."""


@dataclass(frozen=True)
class RowFault:
    row: int
    column: str
    message: str
    line: int = 0
    """Where the row is in the tenant's file (a CSV upload), as the person counts it; 0 for JSON."""


@dataclass(frozen=True)
class Budget:
    seconds: float
    memory_bytes: int
    total_chars: int
    at_once: int = 2
    """How many batches one web process renders at once; one more is refused at once (Busy), so runaway
    templates hold at most this many threads for at most ``seconds`` each."""


@dataclass(frozen=True)
class Rendered:
    """Each row's prompt (None for a row at fault), and the faults, in row order."""

    prompts: list[str | None]
    faults: list[RowFault]


class Busy(Exception):
    """This process renders as many batches as it may: try again shortly."""


_lock = threading.Lock()
_rendering = 0


def rendering() -> int:
    """How many batches this process is rendering now."""
    return _rendering


@contextmanager
def _slot(at_once: int) -> Iterator[None]:
    global _rendering
    with _lock:
        if _rendering >= at_once:
            raise Busy
        _rendering += 1
    try:
        yield
    finally:
        with _lock:
            _rendering -= 1


class TemplateInvalid(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def render_all(source: str, rows: list[dict[str, Any]], budget: Budget) -> Rendered:
    """Every row's prompt (row numbers from 1). Raises TemplateInvalid for a template that is not one,
    Busy when this process renders ``budget.at_once`` batches already."""
    with _slot(budget.at_once):
        return _render(source, rows, budget)


def _render(source: str, rows: list[dict[str, Any]], budget: Budget) -> Rendered:
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, str(budget.memory_bytes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    asked = json.dumps({"source": source, "rows": rows, "total": budget.total_chars})
    try:
        out, err = child.communicate(asked.encode(), timeout=budget.seconds)
        overtime = False
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()  # what it had rendered until then
        overtime = True
    prompts: list[str | None] = []
    faults: list[RowFault] = []
    finished = False
    for text in out.decode().splitlines():
        message = json.loads(text)
        if "invalid" in message:
            raise TemplateInvalid(message["invalid"])
        if message.get("done"):
            finished = True
            break
        prompts.append(message.get("prompt"))
        if message.get("column"):
            faults.append(RowFault(len(prompts), message["column"], message["message"]))
    if not finished and not overtime:
        # past the memory ceiling, or broken: the operator learns which
        log.warning("batch rendering ended early: %s", err.decode(errors="replace")[-2000:])
    if not finished:
        # a runaway template (killed past its time), or one past the memory ceiling
        faults.append(
            RowFault(
                len(prompts) + 1,
                "prompt_template",
                f"rendering the batch took over {budget.seconds:g} s (its budget); "
                "stopped at this row"
                if overtime
                else "rendering this row needed more memory than a batch may use",
            )
        )
    return Rendered(prompts, faults)


# -- in the child ----------------------------------------------------------------------------------------


def _main() -> None:
    _limit_memory(int(sys.argv[1]))
    asked = json.load(sys.stdin)
    environment = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    try:
        template = environment.from_string(asked["source"])
    except TemplateSyntaxError as exc:
        _send({"invalid": f"not a template: {exc.message}"})
        return
    room = asked["total"]
    for values in asked["rows"]:
        prompt, fault = _render_row(template, values, room)
        if prompt is not None:
            room -= len(prompt)
        _send(
            {"prompt": prompt}
            if fault is None
            else {"prompt": None, "column": fault[0], "message": fault[1]}
        )
    _send({"done": True})


def _send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()  # what was rendered reaches the parent even if this child is killed next


def _render_row(template, values: dict[str, Any], room: int) -> tuple[str | None, tuple | None]:
    """The prompt, or (None, (column, message)). Read as it is made: stopped past the limit."""
    parts: list[str] = []
    size = 0
    try:
        for part in template.generate(_variables(values)):
            parts.append(part)
            size += len(part)
            if size > PROMPT_LIMIT + 1_000:  # room for the whitespace stripped below
                break
            if size > room + 1_000:
                break
    except UndefinedError as exc:
        missing = _UNDEFINED.search(str(exc))
        return None, (missing.group(1) if missing else "prompt_template", UNDEFINED)
    except SecurityError as exc:
        return None, ("prompt_template", f"the sandbox refused it: {_short(exc)}")
    except MemoryError:
        return None, (
            "prompt_template",
            "rendering this row needed more memory than a batch may use",
        )
    except RecursionError:
        return None, ("prompt_template", "the template recurses too deeply")
    except Exception as exc:  # a tenant's template: any fault is the row's
        return None, (
            "prompt_template",
            f"the template failed: {type(exc).__name__}: {_short(exc)}",
        )
    prompt = "".join(parts).strip()
    if len(prompt) > PROMPT_LIMIT:
        return None, (
            "prompt_template",
            f"the rendered prompt is over the API's {PROMPT_LIMIT:,} characters",
        )
    if len(prompt) > room:
        return None, ("prompt_template", "the batch's prompts together are over its total size")
    return prompt, None


def _variables(values: dict[str, Any]) -> dict[str, Any]:
    """Each column by its name, and by a name a template can write when its own cannot be
    (``{{ company_name }}`` for "Company Name"); ``row`` holds them all (``{{ row["Company Name"] }}``)."""
    found: dict[str, Any] = dict(values)
    for name, value in values.items():
        plain = _NOT_A_NAME.sub("_", name.strip()).strip("_")
        for alias in (plain, plain.lower()):
            if alias and alias.isidentifier():
                found.setdefault(alias, value)
    found.setdefault("row", dict(values))
    return found


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= _MESSAGE else text[:_MESSAGE] + "..."


def _limit_memory(extra: int) -> None:
    """The address space this child may grow to: what it has now (the interpreter) and ``extra``."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
        now = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    resource.setrlimit(resource.RLIMIT_AS, (now + extra, now + extra))


if __name__ == "__main__":
    _main()
