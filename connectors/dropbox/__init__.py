"""Dropbox, through the official ``dropbox`` SDK: the file into a folder, as an upload session.

- **Sign-in**: an app's refresh token (offline access, scope ``files.content.write`` and
  ``files.metadata.read``), with its app key (and secret, unless the token came through PKCE); the SDK
  refreshes the 4-hour access token itself. ``root_namespace_id`` writes into a team space.
- **Upload sessions** whatever the size (``upload_session/start``, ``append_v2``, ``finish``), so
  Dropbox's 150 MB limit of a single upload never applies: chunks of ``chunk_mb`` (a multiple of 4 MiB,
  4 by default: the SDK takes bytes, so a worker holds about two chunks), the last one sent with the
  finish. After each append the offset is saved with the delivery, so after a killed worker the next
  attempt goes on from there; an append Dropbox had taken before the worker died (``incorrect_offset``
  one chunk ahead) counts as done, and a session it no longer knows starts over. The SDK's own retries
  are off: the relay's retries, backoff and Retry-After apply.
- **Conflicts**: ``replace`` (write mode overwrite; Dropbox keeps the old version), ``rename`` (add with
  autorename: ``name (1).xlsx``) or ``fail`` (add). Parent folders are made by Dropbox.
- **Contention**: Dropbox refuses concurrent commits into one namespace (``too_many_write_operations``, a 429
  or a 409 from ``finish``): a throttle, whose retry commits with an empty body when Dropbox kept the data.
- **Once per delivery**: the file's Dropbox content hash is worked out from each chunk's 4 MiB blocks and
  saved before the finish; an attempt after a crash looks in the folder for a file of that name (or its
  renamed form) with that content hash."""

from __future__ import annotations

from ..base import SdkFileKind

KIND = SdkFileKind("dropbox")
