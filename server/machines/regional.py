"""A workspace's regional settings: the time zone and locale its customers' values are read and written in.

Customers type dates and numbers the way their country writes them ("24/12/2026" is 24 December
in Spain and nonsense in the US; "1.234" is a thousand-odd in Spain and a bit over one in the
UK), and expect them back the same way. ``Regional`` carries the two settings a turn needs;
the locale facts (day or month first, decimal and group marks, month names) come from the CLDR
data shipped with ``babel``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.core import get_global
from babel.dates import get_month_names
from babel.languages import get_official_languages
from babel.numbers import get_decimal_symbol, get_group_symbol

from server.errors import InvalidInput

# When neither the workspace nor its time zone says where it is: day-first like most WhatsApp
# markets (Europe, Latin America, India), and English names.
FALLBACK_LOCALE = "en-GB"
_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


@functools.lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """The babel ``Locale`` of a BCP 47 tag ("es-ES"); unknown tags raise ``InvalidInput``."""
    if not isinstance(tag, str) or not _TAG.match(tag.strip()):
        raise InvalidInput(
            f"locale {tag!r} must be a language tag like es-ES, en-US or pt-BR", field="locale"
        )
    try:
        return Locale.parse(tag.strip().replace("_", "-"), sep="-")
    except (UnknownLocaleError, ValueError):
        raise InvalidInput(
            f"locale {tag!r} is not a known locale; use a language tag like es-ES, en-US or pt-BR",
            field="locale",
        ) from None


def normalize_locale(tag: str) -> str:
    """The canonical form of a locale tag ("es_es" -> "es-ES"), or ``InvalidInput``."""
    locale = babel_locale(tag)
    parts = [locale.language, locale.script, locale.territory]
    return "-".join(p for p in parts if p)


def check_timezone(name: str) -> str:
    """An IANA time zone name ("Europe/Madrid"), or ``InvalidInput``."""
    try:
        ZoneInfo(str(name).strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"time zone {name!r} is not an IANA time zone like Europe/Madrid or America/Mexico_City",
            field="timezone",
        ) from None
    return str(name).strip()


def default_locale(timezone: str | None, country: str | None = None) -> str:
    """The locale of a workspace that never chose one: its country's (default country for phone
    numbers, else the country of its time zone) main language, else ``FALLBACK_LOCALE``."""
    territory = (country or "").strip().upper() or _zone_territory(timezone)
    if territory:
        languages = get_official_languages(territory, de_facto=True)
        if languages:
            try:
                return normalize_locale(f"{languages[0]}-{territory}")
            except InvalidInput:
                pass
    return FALLBACK_LOCALE


def _zone_territory(timezone: str | None) -> str | None:
    if not timezone:
        return None
    territory = get_global("zone_territories").get(timezone)
    return territory if territory and territory != "001" else None


def workspace_regional(workspace: dict[str, Any] | None) -> Regional:
    """The regional settings stored on a workspace document (defaults for what it lacks)."""
    found = workspace or {}
    timezone = found.get("timezone") or "UTC"
    locale = found.get("locale") or default_locale(timezone, found.get("default_country"))
    return Regional(timezone=timezone, locale=locale)


@dataclass(frozen=True)
class Regional:
    """Where a workspace's customers are: values are read and written in this zone and locale."""

    timezone: str = "UTC"
    locale: str = FALLBACK_LOCALE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def babel(self) -> Locale:
        return babel_locale(self.locale)

    @property
    def date_order(self) -> str:
        """ "DMY", "MDY" or "YMD": how the locale orders a numeric date."""
        return _date_order(self.locale)

    @property
    def decimal_mark(self) -> str:
        return get_decimal_symbol(self.babel)

    @property
    def group_mark(self) -> str:
        return get_group_symbol(self.babel)

    def month_names(self) -> tuple[tuple[str, int], ...]:
        """(name, month number) for the English month names and abbreviations, then the locale's."""
        return _month_names(self.locale)


@functools.lru_cache(maxsize=256)
def _date_order(tag: str) -> str:
    skeletons = babel_locale(tag).datetime_skeletons
    pattern = str(getattr(skeletons.get("yMd"), "pattern", "d/M/y"))
    order = ""
    for char in pattern:
        letter = {"d": "D", "M": "M", "L": "M", "y": "Y"}.get(char)
        if letter and letter not in order:
            order += letter
    return order if len(order) == 3 else "DMY"


@functools.lru_cache(maxsize=256)
def _month_names(tag: str) -> tuple[tuple[str, int], ...]:
    names: list[tuple[str, int]] = []
    for locale in ("en", tag):
        for width in ("wide", "abbreviated"):
            for context in ("format", "stand-alone"):
                months = get_month_names(width, context, locale=babel_locale(locale))
                names += [(str(name), number) for number, name in months.items()]
    return tuple(names)
