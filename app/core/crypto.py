"""Secrets at rest: Fernet (AES-128-CBC + HMAC) with several keys for rotation (MultiFernet)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class MissingEncryptionKey(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "RELAY_ENCRYPTION_KEYS is not set. Generate a key with `relay secrets new-key` and set it; "
            "list several, newest first, to rotate (see docs/operations.md)."
        )


class SecretBox:
    def __init__(self, keys: str):
        parsed = [k.strip() for k in keys.split(",") if k.strip()]
        if not parsed:
            raise MissingEncryptionKey
        self._fernet = MultiFernet([Fernet(k) for k in parsed])

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a stored secret cannot be decrypted with the configured keys"
            ) from None

    def reseal(self, sealed: str) -> str:
        """Re-encrypt with the newest key (after adding a key in front of the list)."""
        return self._fernet.rotate(sealed.encode()).decode()
