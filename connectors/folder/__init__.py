"""Local folder: writes the file under one of the relay's folder roots, atomically (a temporary name in
the same folder, then a rename), so a reader never sees half a file and a retry never writes two."""

from __future__ import annotations

import os
from pathlib import Path

from ..base import Delivery, Document, Environment, Outcome, Permanent


class FolderKind:
    name = "folder"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        return None  # the file name comes with the document: deliver() checks for it

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        assert document is not None
        folder = self._folder(delivery, env)
        final = folder / document.name
        if final.exists():  # an earlier attempt renamed it into place before crashing
            return Outcome(str(final))
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{document.name}.{delivery.delivery_id}.part"
        try:
            with document.open(0) as chunks, partial.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return Outcome(str(final))

    @staticmethod
    def _folder(delivery: Delivery, env: Environment) -> Path:
        roots = [Path(r).resolve() for r in str(env.settings["folder_roots"]).split(",") if r.strip()]
        if not roots:
            raise Permanent("no folder roots are configured (RELAY_FOLDER_ROOTS)")
        folder = (roots[0] / str(delivery.config.get("path") or "")).resolve()
        if not any(folder.is_relative_to(root) for root in roots):
            raise Permanent("the folder is outside the configured folder roots")
        return folder


KIND = FolderKind()
