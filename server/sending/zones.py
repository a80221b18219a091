"""The time zone a contact lives in, for quiet hours: known, derived from the phone, or assumed.

In order: the contact's ``timezone`` variable when it holds an IANA zone (a shop that knows it
sets it, by a field, an import or the API); else the zone of the phone number's country, when
the country has one (most do) or a main one (CLDR's primary zones, below); else the workspace's
own zone, also used when the workspace's zone is in the customer's country (a Mexican shop's
Mexican customers are most likely where the shop is). Countries spanning several offsets with
no main zone (United States, Canada, Brazil, Australia, Russia, Indonesia...) fall back to the
workspace's zone: set the ``timezone`` variable to be precise there.

The country comes from the E.164 calling code, or from a BSUID's two-letter prefix
(``US.13491208655302741918``, ``conformance/whatsapp-2026.md``) when that is all we know.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import get_global

from server.channels.whatsapp.costs import country_of

VARIABLE = "timezone"
_BSUID = re.compile(r"^([A-Z]{2})\.[A-Za-z0-9.]+$")
# CLDR supplementalMetadata.xml <primaryZones>: the main zone of a country with several.
PRIMARY_ZONES = {
    "CL": "America/Santiago",
    "CN": "Asia/Shanghai",
    "DE": "Europe/Berlin",
    "EC": "America/Guayaquil",
    "ES": "Europe/Madrid",
    "GB": "Europe/London",
    "MX": "America/Mexico_City",
    "MY": "Asia/Kuala_Lumpur",
    "NZ": "Pacific/Auckland",
    "PT": "Europe/Lisbon",
    "UA": "Europe/Kyiv",
    "UZ": "Asia/Tashkent",
}
# Offsets sampled in winter and summer: zones sharing both are one zone for quiet hours.
_SAMPLES = (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC))


def recipient_country(recipient: str | None) -> str | None:
    """ISO country of a phone number (calling code) or of a BSUID (its prefix), else None."""
    if not recipient:
        return None
    found = _BSUID.match(recipient)
    if found:
        return found.group(1)
    return country_of(recipient)


def contact_zone(contact: Mapping[str, Any], workspace_zone: str) -> tuple[ZoneInfo, str]:
    """(zone, where it came from: ``contact`` | ``phone`` | ``workspace``)."""
    named = (contact.get("variables") or {}).get(VARIABLE)
    zone = _zone(named) if isinstance(named, str) else None
    if zone is not None:
        return zone, "contact"
    fallback = _zone(workspace_zone) or ZoneInfo("UTC")
    country = recipient_country(contact.get("phone"))
    if country is None:
        return fallback, "workspace"
    zones = _country_zones(country)
    if workspace_zone in zones:
        return fallback, "workspace"
    derived = country_zone(country)
    if derived is not None:
        return ZoneInfo(derived), "phone"
    return fallback, "workspace"


@functools.lru_cache(maxsize=512)
def country_zone(country: str) -> str | None:
    """The zone of a country with one offset (or a primary zone), else None."""
    if country in PRIMARY_ZONES:
        return PRIMARY_ZONES[country]
    zones = [z for z in _country_zones(country) if _zone(z) is not None]
    if not zones:
        return None
    offsets = {tuple(ZoneInfo(z).utcoffset(s) for s in _SAMPLES) for z in zones}
    return zones[0] if len(offsets) == 1 else None


def _country_zones(country: str) -> tuple[str, ...]:
    return tuple(get_global("territory_zones").get(country) or ())


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None
