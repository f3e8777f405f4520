"""Conversions behind POST /runs/{id}/export: CSV, HTML and text in Python, the rest via LibreOffice."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from .files import FileStore
from .render import docx_to_text, to_html, xlsx_to_csv

SUPPORTED: dict[str, tuple[str, ...]] = {
    "xlsx": ("pdf", "csv", "png", "html"),
    "docx": ("pdf", "html", "txt", "odt"),
    "pptx": ("pdf", "png", "odp"),
    "md": (),
}
_SOFFICE_TIMEOUT = 180


class ConverterMissing(Exception):
    def __init__(self, fmt: str):
        super().__init__(
            f"Exporting to {fmt} needs LibreOffice, which is not installed here. Install it "
            "(Debian: apt-get install --no-install-recommends libreoffice-calc-nogui "
            "libreoffice-writer-nogui libreoffice-impress-nogui) or point SANDBOX_SOFFICE at soffice."
        )


class ConversionFailed(Exception):
    pass


class Exporter:
    def __init__(self, soffice: str):
        self.soffice = soffice
        # LibreOffice runs one conversion at a time per profile, and each takes a core: serialise them.
        self._lock = threading.Lock()

    def convert(self, source: Path, source_ext: str, fmt: str, out: Path, title: str) -> None:
        staged = FileStore.staging(out)
        if fmt == "csv":
            staged.write_text(xlsx_to_csv(source))
        elif fmt == "html":
            staged.write_text(to_html(source, source_ext, title))
        elif fmt == "txt":
            staged.write_text(docx_to_text(source))
        else:
            self._soffice(source, fmt, staged)
        FileStore.publish(staged, out)

    def _soffice(self, source: Path, fmt: str, staged: Path) -> None:
        if not self.soffice:
            raise ConverterMissing(fmt)
        with self._lock, tempfile.TemporaryDirectory(prefix="sandbox-soffice-") as work:
            workdir = Path(work)
            command = [
                self.soffice,
                f"-env:UserInstallation=file://{workdir / 'profile'}",
                "--headless",
                "--convert-to",
                fmt,
                "--outdir",
                str(workdir / "out"),
                str(source),
            ]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=_SOFFICE_TIMEOUT)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                raise ConversionFailed(
                    f"LibreOffice could not convert the document to {fmt}"
                ) from exc
            produced = workdir / "out" / f"{source.stem}.{fmt}"
            if not produced.exists():
                raise ConversionFailed(f"LibreOffice produced no {fmt} file")
            shutil.move(str(produced), staged)
