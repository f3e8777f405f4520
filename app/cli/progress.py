"""A one-line progress bar for long generations in the terminal."""

from __future__ import annotations

import sys

_WIDTH = 30


def render(status: str, phase: str | None, percent: int, turn: int | None) -> str:
    filled = _WIDTH * max(0, min(100, percent)) // 100
    detail = phase or status
    if turn:
        detail += f", turn {turn}"
    return f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {percent:3d}%  {detail}"


class ProgressLine:
    """Redraws one line on a terminal; elsewhere prints a line only when something changed."""

    def __init__(self, stream=sys.stderr):
        self._stream = stream
        self._last = ""
        self._tty = stream.isatty()

    def update(self, status: str, phase: str | None, percent: int, turn: int | None) -> None:
        line = render(status, phase, percent, turn)
        if line == self._last:
            return
        self._last = line
        self._stream.write(f"\r{line:<70}" if self._tty else line + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()
