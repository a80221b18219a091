"""Documents as BSON bytes, for what leaves the store's driver: pub/sub payloads, forwarded turns
between replicas, idle actors' documents. One codec, so datetimes always come back tz-aware UTC."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import bson
from bson.codec_options import CodecOptions

_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)


def pack(document: Mapping[str, Any]) -> bytes:
    return bson.encode(document, codec_options=_CODEC)


def unpack(payload: bytes) -> dict[str, Any]:
    return bson.decode(payload, codec_options=_CODEC)
