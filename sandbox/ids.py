"""Identifiers with the contract's prefixes over ULIDs, so they sort by creation time."""

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"
