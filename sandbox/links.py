"""Signed, expiring links for downloads and the read-only edit view (itsdangerous + the sandbox clock)."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from .clock import Clock


class LinkExpired(Exception):
    pass


class LinkInvalid(Exception):
    pass


@dataclass(frozen=True)
class FileRef:
    run_id: str
    task_id: str
    export: str = ""  # empty: the document itself; else an export format


class Links:
    def __init__(self, secret: str, clock: Clock, ttl_seconds: float):
        # The expiry is part of the signed payload rather than itsdangerous' own timestamp, so that
        # the injectable clock governs it like every other deadline in the sandbox.
        self._downloads = URLSafeSerializer(secret, salt="sandbox-download")
        self._views = URLSafeSerializer(secret, salt="sandbox-view")
        self._clock = clock
        self.ttl = ttl_seconds

    def download_token(self, ref: FileRef) -> tuple[str, float]:
        expires = self._clock.now() + self.ttl
        return self._downloads.dumps([ref.run_id, ref.task_id, ref.export, expires]), expires

    def view_token(self, run_id: str) -> str:
        return self._views.dumps(run_id)

    def open_download(self, token: str) -> FileRef:
        try:
            run_id, task_id, export, expires = self._downloads.loads(token)
        except (BadSignature, ValueError, TypeError) as exc:
            raise LinkInvalid from exc
        if self._clock.now() > float(expires):
            raise LinkExpired
        return FileRef(run_id, task_id, export)

    def open_view(self, token: str) -> str:
        try:
            return str(self._views.loads(token))
        except BadSignature as exc:
            raise LinkInvalid from exc
