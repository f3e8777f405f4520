"""S3-compatible storage (AWS S3, MinIO, Cloudflare R2 and the like): the file as one object, through boto3.

Small files go in one PUT; larger ones as a multipart upload in parts of ``part_mb`` (at least 5 MiB, at
most 10,000 parts), whose upload id is saved with the delivery, so after a killed worker the upload asks S3
which parts it holds (``ListParts``) and goes on from there; an upload S3 no longer knows starts over. A
permanent failure aborts the upload, so no parts are left to pay for. The object carries the delivery id
in its metadata (``x-amz-meta-relay-delivery-id``), which is looked for first: a retry never writes twice.
Without ``s3:ListBucket`` S3 answers a missing key 403: read as "unknown", and the ``rename`` and ``fail``
policies then write with ``If-None-Match``. Custom endpoints get checksums only when required. The delivery's
location carries a presigned GET link valid for ``link_seconds`` (the relay's own link with temporary
credentials). ``endpoint_url`` serves
stores other than AWS; it must be a public address unless RELAY_OUTBOUND_ALLOW allows it."""

from __future__ import annotations

from ..base import SdkFileKind

KIND = SdkFileKind("s3")
