"""Local folder: writes the file under one of the relay's folder roots, atomically (a temporary name in
the same folder, then a rename), so a reader never sees half a file and a retry never writes two.

Each tenant has a root of its own (``tenant_root``): two tenants' ``Deals/{record_key}`` never meet.
``path`` and ``file_name`` are templates (connectors.naming). The name is chosen once, under the conflict
policy (``replace``, ``rename`` as ``name (2).xlsx``, or ``fail``), and saved with the delivery before the
rename: an attempt after a crash finishes the rename its predecessor had left, or finds the file placed."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from .. import naming
from ..base import Check, Delivery, Document, Environment, Outcome, Permanent, Verdict

REFUSED = naming.Rules(refused="/\\", strip=" ")


class FolderKind:
    name = "folder"
    needs_document = True

    def find_existing(self, delivery: Delivery, env: Environment) -> Outcome | None:
        placed = delivery.state.get("placed")
        if placed and Path(placed).exists() and not _partial(Path(placed), delivery).exists():
            return Outcome(placed)
        return None

    def deliver(self, delivery: Delivery, document: Document | None, env: Environment) -> Outcome:
        assert document is not None
        placed = delivery.state.get("placed")
        # written whole, then the worker died
        if placed and _partial(Path(placed), delivery).exists():
            os.replace(_partial(Path(placed), delivery), placed)
            return Outcome(placed)
        folder = self._folder(delivery, env, document)
        folder.mkdir(parents=True, exist_ok=True)
        final = _name_for(
            folder, naming.file_name(delivery, document, REFUSED), delivery.config.get("conflict")
        )
        partial = _partial(final, delivery)
        try:
            with document.open(0) as chunks, partial.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            env.save_state(delivery.delivery_id, {"placed": str(final)})
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return Outcome(str(final))

    def check(self, target: Delivery, env: Environment) -> list[Check]:
        """The tenant's folder can be made and written: a probe file is written and removed. (Where the
        path template points is known only with a document, so its root is what is checked.)"""
        try:
            root = tenant_root(
                str(env.settings["folder_roots"]),
                str(env.settings.get("folder_tenant_roots") or ""),
                target.tenant_id,
            )
        except Permanent as exc:
            fix = "Ask the operator to set RELAY_FOLDER_ROOTS (and RELAY_FOLDER_TENANT_ROOTS)."
            return [Check("the tenant has a folder", Verdict.FAILURE, exc.message, fix)]
        probe = root / f".relay-check-{uuid.uuid4().hex}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return [
                Check(
                    "the folder can be written",
                    Verdict.FAILURE,
                    f"the relay cannot write in this tenant's folder ({exc.strerror or exc})",
                    "Ask the operator to let the relay's user write under RELAY_FOLDER_ROOTS.",
                )
            ]
        return [Check("the folder can be written", Verdict.PASS, "a file was written and removed")]

    @staticmethod
    def _folder(delivery: Delivery, env: Environment, document: Document) -> Path:
        root = tenant_root(
            str(env.settings["folder_roots"]),
            str(env.settings.get("folder_tenant_roots") or ""),
            delivery.tenant_id,
        )
        folder = (root / naming.folder(delivery, document, key="path", rules=REFUSED)).resolve()
        # a rendered field (a record key of "..") must not climb out of the tenant's own folder
        if not folder.is_relative_to(root):
            raise Permanent("the folder is outside this tenant's folder root")
        return folder


def tenant_root(folder_roots: str, tenant_roots: str, tenant_id: str) -> Path:
    """The folder a tenant's deliveries are written under: the one the operator mapped it to (a relative
    one under the first folder root), else a folder named by its id under the first folder root. It lies
    within one of the folder roots, or nothing is written."""
    roots = [Path(r.strip()).resolve() for r in folder_roots.split(",") if r.strip()]
    if not roots:
        raise Permanent("no folder roots are configured (RELAY_FOLDER_ROOTS)")
    if not tenant_id or tenant_id in (".", "..") or "/" in tenant_id or "\\" in tenant_id:
        raise Permanent("the delivery names no tenant a folder can be kept for")
    mapped = dict(
        (name.strip(), path.strip())
        for name, sep, path in (entry.partition("=") for entry in tenant_roots.split(","))
        if sep and name.strip() and path.strip()
    )
    root = (roots[0] / mapped.get(tenant_id, tenant_id)).resolve()
    if not any(root.is_relative_to(r) for r in roots):
        raise Permanent("the tenant's folder root is outside the configured folder roots")
    # the first folder root holds every other tenant's folder: a root at or above it would reach them
    if roots[0].is_relative_to(root):
        raise Permanent("the tenant's folder root would hold other tenants' folders")
    return root


def _name_for(folder: Path, name: str, policy: str | None) -> Path:
    if policy in (None, "", "replace") or not (folder / name).exists():
        return folder / name
    if policy == "fail":
        raise Permanent(f"{folder / name} exists and the conflict policy is fail")
    return folder / naming.free_name(name, lambda candidate: (folder / candidate).exists())


def _partial(final: Path, delivery: Delivery) -> Path:
    return final.with_name(f".{final.name}.{delivery.delivery_id}.part")


KIND = FolderKind()
