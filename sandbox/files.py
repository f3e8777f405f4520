"""Where documents and exports live on disk: data_dir/<org>/<run>/<task>.<ext>, written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "md": "text/markdown",
    "pdf": "application/pdf",
    "csv": "text/csv",
    "png": "image/png",
    "html": "text/html",
    "txt": "text/plain",
    "odt": "application/vnd.oasis.opendocument.text",
    "odp": "application/vnd.oasis.opendocument.presentation",
}


class FileStore:
    def __init__(self, root: Path):
        self.root = root.resolve()

    def run_dir(self, org_id: str, run_id: str) -> Path:
        return self.root / org_id / run_id

    def document(self, org_id: str, run_id: str, task_id: str, ext: str) -> Path:
        return self.run_dir(org_id, run_id) / f"{task_id}.{ext}"

    def export(self, org_id: str, run_id: str, task_id: str, fmt: str) -> Path:
        return self.run_dir(org_id, run_id) / "exports" / f"{task_id}.{fmt}"

    @staticmethod
    def staging(final: Path) -> Path:
        """A temporary sibling of ``final``; publish() renames it into place."""
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{os.getpid()}.tmp")

    @staticmethod
    def publish(staged: Path, final: Path) -> None:
        os.replace(staged, final)

    def delete_run(self, org_id: str, run_id: str) -> None:
        shutil.rmtree(self.run_dir(org_id, run_id), ignore_errors=True)
