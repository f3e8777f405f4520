"""Text results (the /text/{kind} endpoints): Markdown, one section per turn."""

from __future__ import annotations

from pathlib import Path

from .plan import Plan

KINDS = ("summary", "email", "memo", "rewrite", "bullets")


def build_text(previous: Path | None, plan: Plan, out: Path, kind: str) -> str:
    earlier = previous.read_text() if previous else ""
    lines = [f"{'#' if not earlier else '##'} {plan.title}", ""]
    if kind == "email":
        lines += ["Hi team,", "", f"A short update on {plan.title.lower()}:", ""]
    lines += [f"- {bullet}" for bullet in plan.bullets]
    out.write_text((earlier + "\n" if earlier else "") + "\n".join(lines) + "\n")
    article = "an" if kind[0] in "aeiou" else "a"
    return f"Wrote {article} {kind} on '{plan.title}' ({len(plan.bullets)} points)."
