"""Functions say what they touch: a module whose functions take the process's parts declares which in
a ``Needs`` Protocol (app.stores.context.Context has them all), and the declaration is what its code
uses, its own and that of the functions it hands the parts to (a Needs extends theirs). Only the
entry points (web, CLI, RQ's job functions, the worker) take the whole Context."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from app.stores.context import Context

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = (
    "app/web/",
    "app/cli/",
    "app/work/jobs.py",
    "app/work/worker.py",
    "app/stores/context.py",
)


def _is_parts(node: ast.AST) -> bool:
    """``ctx`` or ``self._ctx``: how the code names the parts it was given."""
    if isinstance(node, ast.Name):
        return node.id == "ctx"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "_ctx"
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _modules() -> list[Path]:
    return sorted(p for p in (ROOT / "app").rglob("*.py") if "ctx" in p.read_text())


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def declared(module) -> set[str]:
    """The parts a module's Needs lists, with those of the Needs it extends."""
    needs = getattr(module, "Needs", None)
    return {
        name
        for kind in getattr(needs, "__mro__", ())
        for name in vars(kind).get("__annotations__", {})
    }


def used(path: Path, module) -> tuple[set[str], set[str]]:
    """The parts the module's code reads, and the modules it hands them to."""
    tree = ast.parse(path.read_text())
    # super().__init__(ctx, ...) hands them to the class's base
    base_of = {
        id(node): klass.bases[0]
        for klass in ast.walk(tree)
        if isinstance(klass, ast.ClassDef) and klass.bases
        for node in ast.walk(klass)
    }
    reads, handed_to = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_parts(node.value):
            reads.add(node.attr)
        if not isinstance(node, ast.Call):
            continue
        callee = ast.unparse(node.func)
        if not any(_is_parts(a) for a in [*node.args, *(k.value for k in node.keywords)]):
            continue
        if callee.startswith("super()"):
            callee = ast.unparse(base_of[id(node)])
        if not callee.startswith("self."):
            target = eval(callee, vars(module))  # a name the module's own code calls
            handed_to.add(getattr(target, "__module__", ""))
    return reads, handed_to - {module.__name__}


def _outside_entry_points() -> list[Path]:
    return [p for p in _modules() if not str(p.relative_to(ROOT)).startswith(ENTRY_POINTS)]


@pytest.mark.parametrize("path", _outside_entry_points(), ids=_name)
def test_a_module_declares_the_parts_it_uses(path):
    module = importlib.import_module(_name(path))
    reads, handed_to = used(path, module)
    needed = reads | set().union(*(declared(importlib.import_module(m)) for m in handed_to))
    assert needed <= set(Context.__annotations__), "only parts a Context has"
    assert declared(module) == needed, (
        f"{module.__name__}.Needs should list exactly {sorted(needed)} "
        f"(it lists {sorted(declared(module))})"
    )


@pytest.mark.parametrize("path", _outside_entry_points(), ids=_name)
def test_only_entry_points_take_the_whole_context(path):
    annotations = [
        ast.unparse(node.annotation)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.arg) and node.annotation is not None
    ]
    assert not [a for a in annotations if a.split(".")[-1].startswith("Context")], (
        f"{_name(path)} takes the whole Context; declare its Needs instead"
    )


def test_the_check_sees_a_part_not_declared_and_one_handed_on(tmp_path, monkeypatch):
    """A module that reads a part its Needs does not list, or hands the parts to a function of
    another module, is seen doing so."""
    package = tmp_path / "probe"
    package.mkdir()
    (package / "mod.py").write_text(
        "from typing import Protocol\n"
        "from app.domain import links\n"
        "class Needs(Protocol):\n"
        "    tasks: object\n"
        "def f(ctx: Needs):\n"
        "    return ctx.tasks, ctx.queues, links.file_link(ctx, 't')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("probe.mod")
    reads, handed_to = used(package / "mod.py", module)
    assert reads - declared(module) == {"queues"}
    assert handed_to == {"app.domain.links"}
