"""Sealing secrets, rotating the key, and where the embedded setup keeps its key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from server.config import Settings
from server.dev.embedded import DEV_EGRESS_ALLOW, apply_local_defaults
from server.secret_box import (
    KEY_FILE,
    SEALED_PREFIX,
    SecretBox,
    SecretKeyError,
    generate_key,
    key_from_data_dir,
)


def test_a_sealed_value_opens_and_a_plaintext_one_reads_as_it_is() -> None:
    box = SecretBox([generate_key()])
    sealed = box.seal("EAAB-token")
    assert sealed.startswith(SEALED_PREFIX) and "EAAB" not in sealed
    assert box.seal("EAAB-token") != sealed  # a fresh IV each time: equal secrets do not look equal
    assert box.open(sealed) == "EAAB-token"
    assert box.open("written-before-encryption") == "written-before-encryption"
    assert box.open(None) is None


def test_the_first_key_seals_every_key_opens_and_reseal_moves_to_the_first() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = SecretBox([old]).seal("s3cret")
    both = SecretBox.from_setting(f" {new} , {old} ")
    assert both.open(sealed_old) == "s3cret"
    assert not both.is_current(sealed_old) and not both.is_current("plaintext")
    resealed = both.reseal(sealed_old)
    assert both.is_current(resealed)
    assert Fernet(new.encode()).decrypt(resealed.removeprefix(SEALED_PREFIX)).decode() == "s3cret"
    assert SecretBox([new]).open(resealed) == "s3cret"
    with pytest.raises(SecretKeyError, match="not in KONVO_SECRET_KEY"):
        SecretBox([new]).open(sealed_old)


@pytest.mark.parametrize("setting", ["", " , ", "not-a-fernet-key", "ä" * 44])
def test_an_unusable_key_setting_says_so(setting: str) -> None:
    with pytest.raises(SecretKeyError, match="KONVO_SECRET_KEY"):
        SecretBox.from_setting(setting)


def test_the_data_dir_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    assert key_from_data_dir(tmp_path, create=False) is None
    key = key_from_data_dir(tmp_path, create=True)
    path = tmp_path / KEY_FILE
    assert key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_from_data_dir(tmp_path, create=True) == key
    path.chmod(0o644)
    assert key_from_data_dir(tmp_path, create=False) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    SecretBox([key])  # a usable key


def test_the_embedded_setup_fills_in_loopback_egress_and_its_key(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path / "dev")
    apply_local_defaults(embedded, embedded_store=True)
    assert embedded.egress_allow == DEV_EGRESS_ALLOW
    assert embedded.secret_key is not None and (tmp_path / "dev" / KEY_FILE).exists()
    chosen = Settings(data_dir=tmp_path / "dev2", egress_allow="", secret_key=SecretStr(generate_key()))
    apply_local_defaults(chosen, embedded_store=True)
    assert chosen.egress_allow == "" and not (tmp_path / "dev2" / KEY_FILE).exists()  # the operator's word


def test_an_external_store_needs_the_shared_key(tmp_path: Path) -> None:
    production = Settings(data_dir=tmp_path, mongodb_uri="mongodb://db.internal/")
    with pytest.raises(SecretKeyError, match="KONVO_SECRET_KEY is not set"):
        apply_local_defaults(production, embedded_store=False)
    assert production.egress_allow is None  # no loopback outside the embedded setup
    key_from_data_dir(tmp_path, create=True)  # an operator may place the key file instead
    apply_local_defaults(production, embedded_store=False)
    assert production.secret_key is not None and production.egress_allow is None
