"""The blank documents new runs start from: the libraries' own defaults, made lean once per process.

python-docx's default template defines all 164 built-in styles in full (a 350 KB styles.xml) and carries a
438 KB stylesWithEffects.xml that only Word 2010 reads; python-pptx's has 11 slide layouts. Parsing,
re-serialising and compressing those for every task was most of a document's cost. The lean templates keep
what the builders use (and what those parts depend on), so every document is still a complete, valid file:
Word and PowerPoint know the built-in styles and layouts that are left out, and add them when a user picks one.
"""

from __future__ import annotations

import functools
import io

from docx import Document
from docx.oxml.ns import qn
from pptx import Presentation

DOCUMENT_STYLES = ("Title", "heading 1", "List Bullet", "Light Grid Accent 1")
"""The styles the Word builder uses, by their names in styles.xml (plus the defaults, kept whatever this says)."""
DECK_LAYOUTS = ("Title Slide", "Title and Content", "Title Only")
"""The slide layouts the deck and outline builders use."""


@functools.cache
def blank_document() -> bytes:
    document = Document()
    _keep_styles(document.styles.element, DOCUMENT_STYLES)
    for rel_id, rel in list(document.part.rels.items()):
        if rel.reltype.endswith("/stylesWithEffects"):
            document.part.drop_rel(rel_id)
    return _saved(document)


@functools.cache
def blank_deck() -> bytes:
    deck = Presentation()
    for layout in list(deck.slide_layouts):
        if layout.name not in DECK_LAYOUTS:
            deck.slide_layouts.remove(layout)
    return _saved(deck)


def _keep_styles(styles, names: tuple[str, ...]) -> None:
    """Drop every style but the defaults, those named, and the styles they are based on, link to or lead to."""
    by_id = {style.get(qn("w:styleId")): style for style in styles.findall(qn("w:style"))}
    wanted = [
        style_id
        for style_id, style in by_id.items()
        if style.get(qn("w:default")) == "1" or style.find(qn("w:name")).get(qn("w:val")) in names
    ]
    kept: set[str] = set()
    while wanted:
        style_id = wanted.pop()
        if style_id in kept or style_id not in by_id:
            continue
        kept.add(style_id)
        for tag in ("w:basedOn", "w:link", "w:next"):
            if (ref := by_id[style_id].find(qn(tag))) is not None:
                wanted.append(ref.get(qn("w:val")))
    for style_id, style in by_id.items():
        if style_id not in kept:
            styles.remove(style)


def _saved(document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
