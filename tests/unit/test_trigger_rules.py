"""Pure parts of triggers: payload paths, phone normalisation, signatures, keyword matching, tiers."""

from __future__ import annotations

import pytest

from server.errors import InvalidInput
from server.machines.keywords import compile_rules, normalize, pick
from server.triggers.broadcast_rules import tier_limit
from server.triggers.mapping import PayloadError, extract, lookup, parse_mapping, to_e164
from server.triggers.signatures import (
    konvo_header,
    konvo_signature,
    scheme_of,
    shopify_signature,
    timestamped_signature,
    verify,
)

PAYLOAD = {
    "customer": {"phone": "+34 600-111-222", "tags": None},
    "line_items": [{"title": "Gorra", "qty": 2}],
}


def test_lookup_follows_dicts_and_list_indexes() -> None:
    assert lookup(PAYLOAD, "line_items.0.title") == "Gorra"
    assert lookup(PAYLOAD, "customer.phone") == "+34 600-111-222"
    with pytest.raises(PayloadError) as missing:
        lookup(PAYLOAD, "line_items.1.title")
    assert missing.value.path == "line_items.1.title" and "'line_items.1'" in missing.value.message
    with pytest.raises(PayloadError):
        lookup(PAYLOAD, "customer.tags")  # null counts as missing


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+34 600-111-222", None, "+34600111222"),
        ("34600111222", "MX", "+34600111222"),
        ("0034600111222", "MX", "+34600111222"),
        ("600111222", "ES", "+34600111222"),
        ("55 1234 5678", "MX", "+525512345678"),
        (447911123456, None, "+447911123456"),
        ("07911 123456", "GB", "+447911123456"),
    ],
)
def test_phones_become_e164(raw: object, country: str | None, expected: str) -> None:
    assert to_e164(raw, country, "phone") == expected


def test_bad_phones_name_the_path() -> None:
    for raw, country in [("600111222", None), ("12", "ES"), ({"n": 1}, "ES")]:
        with pytest.raises(PayloadError) as bad:
            to_e164(raw, country, "customer.phone")
        assert bad.value.path == "customer.phone"


def test_extract_with_optional_variables_and_idempotency_key() -> None:
    mapping = parse_mapping(
        {
            "phone": "customer.phone",
            "idempotency_key": "line_items.0.qty",
            "variables": {"item": "line_items.0.title", "note": {"path": "note", "default": "-"}},
        }
    )
    found = extract(mapping, PAYLOAD, None)
    assert (found.phone, found.variables, found.idempotency_key) == (
        "+34600111222",
        {"item": "Gorra", "note": "-"},
        "2",
    )


def test_mapping_errors_name_the_key() -> None:
    with pytest.raises(InvalidInput) as bad:
        parse_mapping({"phone": "a", "variables": {"x": "a..b"}})
    assert "mapping.variables" in bad.value.message
    with pytest.raises(InvalidInput) as bad:
        parse_mapping({"phone": "a", "unknown": 1})
    assert "mapping.unknown" in bad.value.message


def test_signatures() -> None:
    body = b'{"id": 1}'
    now = 1_760_000_000

    def check(scheme: str, headers: dict[str, str], at: float = now, data: bytes = body) -> str | None:
        return verify(scheme, "s3cret", data, headers, at).problem

    legacy = konvo_signature("s3cret", body)
    assert check("konvo_legacy", {"x-konvo-signature": legacy}) is None
    assert check("konvo_legacy", {"x-konvo-signature": "sha256=" + legacy}) is None
    assert check("konvo_legacy", {"x-konvo-signature": "SHA256=" + legacy.upper()}) is None
    assert check("konvo_legacy", {"x-konvo-signature": legacy}, data=body + b" ")
    assert check("konvo", {"x-konvo-signature": legacy})  # the default scheme needs the timestamp
    header = konvo_header("s3cret", body, now)
    assert header == f"t={now},v1={timestamped_signature('s3cret', now, body)}"
    verdict = verify("konvo", "s3cret", body, {"x-konvo-signature": header}, now + 299)
    assert verdict.problem is None and verdict.replay_key == timestamped_signature("s3cret", now, body)
    assert check("konvo", {"x-konvo-signature": header}, at=now + 301)  # stale
    assert check("konvo", {"x-konvo-signature": header}, at=now - 301)  # from the future
    assert check("konvo", {"x-konvo-signature": header.replace(f"t={now}", f"t={now + 1}")})
    rolled = f"t={now},v1={'0' * 64},V1={timestamped_signature('s3cret', now, body).upper()}"
    assert check("konvo", {"x-konvo-signature": rolled}) is None  # several v1, any case
    for broken in ("garbage", "t=abc,v1=00", f"t={now}", "v1=00", f"t=١٧٦,v1={legacy}"):
        assert check("konvo", {"x-konvo-signature": broken}), broken
    assert check("shopify", {"x-shopify-hmac-sha256": shopify_signature("s3cret", body)}) is None
    assert check("shopify", {"x-konvo-signature": legacy})
    assert check("token", {"x-konvo-token": "s3cret"}) is None
    assert check("token", {"authorization": "Bearer s3cret"}) is None
    assert check("token", {"x-konvo-token": "guess"})


def test_triggers_keep_the_scheme_they_were_created_with() -> None:
    assert scheme_of({"mapping": {"phone": "p", "signature": "konvo"}}) == "konvo_legacy"  # stored before
    assert scheme_of({"mapping": {"phone": "p"}}) == "konvo_legacy"
    assert scheme_of({"mapping": {"phone": "p", "signature": "shopify"}}) == "shopify"
    assert (
        scheme_of({"mapping": {"phone": "p", "signature": "konvo"}, "signature_scheme": "konvo"}) == "konvo"
    )


def test_keywords_ignore_case_accents_and_punctuation() -> None:
    assert normalize("  ¡Hola,  SEÑOR! ") == "hola senor"
    rules = compile_rules(
        [
            {"_id": "a", "flow_id": "f_any", "kind": "ANY_MESSAGE", "priority": 0},
            {
                "_id": "b",
                "flow_id": "f_info",
                "kind": "KEYWORD",
                "keywords": ["Información"],
                "match": "CONTAINS",
                "priority": 1,
            },
            {
                "_id": "c",
                "flow_id": "f_off",
                "kind": "KEYWORD",
                "keywords": ["baja"],
                "priority": 9,
                "enabled": False,
            },
        ]
    )
    assert [r.id for r in rules] == ["b", "a"]
    assert pick(rules, "quiero INFORMACION, gracias") == (
        "f_info",
        {"inbound_trigger": "b", "text": "quiero INFORMACION, gracias", "keyword": "informacion"},
    )
    assert pick(rules, "informaciones")[0] == "f_any"  # type: ignore[index]
    assert pick(rules[:1], None) is None


def test_tiers() -> None:
    assert [
        tier_limit(t) for t in ("TIER_250", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED", None)
    ] == [250, 2_000, 10_000, 100_000, None, None]
