"""OneDrive and SharePoint, through Microsoft Graph: the file into a folder of a drive, as an upload session.

- **Sign-in**: app-only tokens (client credentials) from Microsoft Entra, through ``msal``; the app needs
  the ``Sites.ReadWrite.All`` application permission (the one createUploadSession lists for apps), or
  ``Sites.Selected`` with write access granted on the site.
- **The drive**: a user's OneDrive (``user``), a SharePoint site's library (``site`` as
  ``contoso.sharepoint.com:/sites/ops`` or a site id, and ``library``, the site's default one otherwise), or
  a drive id (``drive_id``). The folder (a template, connectors.naming) is created when missing.
- **Upload sessions**, whatever the size: ``createUploadSession``, then fragments of ``chunk_kib``
  (a multiple of 320 KiB under 60 MiB, 10 MiB by default), each with ``Content-Range`` and no
  Authorization header (the upload URL carries its own). The session is saved with the delivery before the
  first byte goes, so after a killed worker the next attempt asks the session for ``nextExpectedRanges`` and
  sends the rest; a session Graph no longer knows (404) starts over, and a 416 re-reads where it stands.
  OneDrive for Business keeps one open session per path, whatever the conflict behavior: while another is
  open (another delivery of the same file, or one whose answer was lost) the delivery waits and asks again,
  spending no attempt (``Throttled``); Graph closes an idle session within 15 minutes.
- **Conflicts**: ``@microsoft.graph.conflictBehavior`` ``replace`` (SharePoint keeps the old one as a
  version), ``rename`` (Graph names it ``name 1.xlsx``) or ``fail``.
- **Once per delivery**: Graph keeps no property of ours on a file, so an attempt after a crash looks in
  the folder for the file it was uploading: its name (or the renamed one; case-insensitive, as OneDrive's
  names are), its size, and modified after the session began (by Graph's own clock, from the session's Date
  header).
- **Check** (writer.check): signs in, finds the drive and the folder, and opens an upload session for a
  name of its own that it cancels at once: the app may write, and nothing was uploaded."""

from __future__ import annotations

from ..base import SdkFileKind

KIND = SdkFileKind("onedrive")
