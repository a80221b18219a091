"""Meta's webhook signature is the whole ``sha256=<64 hex>`` HMAC, compared in full.

Issue 18's mutation run showed a check over only the length of the given header (so ``sha256=``
alone, or any correct prefix, passed) survived every webhook test: these pin the whole value.
"""

from __future__ import annotations

import pytest

from server.channels.whatsapp.signature import PREFIX, signature_for, signature_valid

BODY = b'{"object":"whatsapp_business_account","entry":[]}'
SECRET = "app-secret"


def test_the_exact_signature_is_valid_in_any_case() -> None:
    header = signature_for(BODY, SECRET)
    assert signature_valid(BODY, SECRET, header)
    assert signature_valid(BODY, SECRET, header.upper().replace("SHA256=", "sha256="))
    assert signature_valid(BODY, SECRET, "SHA256=" + header[len(PREFIX) :])


@pytest.mark.parametrize("keep", [0, 1, 8, 32, 63])
def test_a_correct_prefix_of_the_digest_is_refused(keep: int) -> None:
    digest = signature_for(BODY, SECRET)[len(PREFIX) :]
    assert not signature_valid(BODY, SECRET, PREFIX + digest[:keep])


def test_a_digest_with_extra_characters_is_refused() -> None:
    assert not signature_valid(BODY, SECRET, signature_for(BODY, SECRET) + "0")


def test_one_changed_character_anywhere_is_refused() -> None:
    header = signature_for(BODY, SECRET)
    for at in range(len(PREFIX), len(header)):
        flipped = "0" if header[at] != "0" else "1"
        assert not signature_valid(BODY, SECRET, header[:at] + flipped + header[at + 1 :]), at


def test_the_signature_of_another_body_or_secret_is_refused() -> None:
    assert not signature_valid(BODY + b" ", SECRET, signature_for(BODY, SECRET))
    assert not signature_valid(BODY, SECRET, signature_for(BODY, "other-secret"))
    assert not signature_valid(BODY, "", signature_for(BODY, ""))
    assert not signature_valid(BODY, SECRET, None)
    assert not signature_valid(BODY, SECRET, signature_for(BODY, SECRET)[len(PREFIX) :])  # no prefix
