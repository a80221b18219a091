"""Secrets at rest: channel access tokens, app secrets, verify tokens, Klaviyo keys, trigger secrets.

A database dump or a read-only store credential must not hand over every tenant's WhatsApp and
Klaviyo access, so these values are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``) before they are written. ``KONVO_SECRET_KEY`` holds one or more keys, comma
separated: the first seals, every one opens (MultiFernet). Rotation: put a new key first and
restart (start-up re-seals every stored secret with it, see ``reseal``), then drop the old key.

A sealed value is stored as ``"fernet:" + token``. Anything else is a plaintext value written
before encryption existed: it is read as it is and sealed by the start-up pass.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SEALED_PREFIX = "fernet:"
KEY_FILE = "secret.key"


class SecretKeyError(RuntimeError):
    """The key setting is unusable, or a stored secret was sealed with a key no longer configured."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Seals and opens secret strings with the configured keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        cleaned = [key.strip() for key in keys if key.strip()]
        if not cleaned:
            raise SecretKeyError("KONVO_SECRET_KEY holds no key")
        try:
            fernets = [Fernet(key.encode("ascii")) for key in cleaned]
        except (ValueError, UnicodeEncodeError):
            raise SecretKeyError(
                "KONVO_SECRET_KEY: each key is 32 url-safe base64-encoded bytes (make one with "
                "`konvo secret-key`)"
            ) from None
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, text: str) -> SecretBox:
        return cls(text.split(","))

    @staticmethod
    def is_sealed(stored: object) -> bool:
        return isinstance(stored, str) and stored.startswith(SEALED_PREFIX)

    def seal(self, value: str) -> str:
        return SEALED_PREFIX + self._primary.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, stored: str | None) -> str | None:
        """The plaintext of a stored value; a legacy plaintext value is returned as it is."""
        if stored is None or not self.is_sealed(stored):
            return stored
        try:
            return self._all.decrypt(stored[len(SEALED_PREFIX) :].encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret was sealed with a key that is not in KONVO_SECRET_KEY "
                "(keep the old key after the new one until the restart has re-sealed everything)"
            ) from None

    def is_current(self, stored: object) -> bool:
        """Sealed with the first key: nothing for ``reseal`` to do."""
        if not self.is_sealed(stored):
            return False
        assert isinstance(stored, str)
        try:
            self._primary.decrypt(stored[len(SEALED_PREFIX) :].encode("ascii"))
        except InvalidToken:
            return False
        return True

    def reseal(self, stored: str) -> str:
        """A plaintext or older-key value sealed with the first key."""
        plain = self.open(stored)
        assert plain is not None
        return self.seal(plain)


def key_from_data_dir(data_dir: Path, create: bool) -> str | None:
    """The key kept in ``<data dir>/secret.key`` (mode 0600), made when missing and ``create``.

    For one process on its own data dir (the embedded setup). Processes sharing a store must share
    the key, so they set ``KONVO_SECRET_KEY`` instead.
    """
    path = data_dir / KEY_FILE
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile: use theirs
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(generate_key() + "\n")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
    return path.read_text().strip()
