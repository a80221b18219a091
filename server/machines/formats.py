"""How a value is written into a message: the workspace locale's way, or a format the author names.

A placeholder may name a format after a bar: ``{{contact.birthday|date}}``,
``{{contact.birthday|date:long}}``, ``{{contact.birthday|date:%Y-%m-%d}}``,
``{{contact.total|number:2}}``, ``{{trigger.amount|currency:EUR}}`` (docs/sandbox.md lists them).
Without one, a contact's typed values are written as the locale writes them: dates
"24/12/2026" (es-ES) or "12/24/2026" (en-US) in the workspace's time zone, numbers "1.234,50",
yes/no in the locale's language; trigger and reply values are written as they came.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal, localcontext

from babel.dates import (
    format_date,
    format_datetime,
    format_skeleton,
    format_time,
    get_day_names,
    get_month_names,
    get_period_names,
)
from babel.numbers import (
    UnknownCurrencyError,
    format_currency,
    get_territory_currencies,
    parse_pattern,
)

from server.clock import as_utc
from server.errors import InvalidInput
from server.machines.regional import Regional
from server.machines.values import coerce_value

FORMATS = ("date", "datetime", "time", "number", "currency")
STYLES = ("short", "medium", "long", "full")
MAX_DECIMALS = 6
# A non-whole number shows at least this many decimals: amounts are what flows mostly show
# ("1.234,50", as the customer typed it), and a float forgets trailing zeros.
MIN_DECIMALS = 2
_DIRECTIVE = re.compile(r"%(-?)(.)")
_YES_NO = {
    "es": ("sí", "no"),
    "ca": ("sí", "no"),
    "pt": ("sim", "não"),
    "fr": ("oui", "non"),
    "it": ("sì", "no"),
    "de": ("ja", "nein"),
    "nl": ("ja", "nee"),
}


class FormatError(Exception):
    """A format that does not exist, or a value it cannot write; the message says which."""


@dataclass(frozen=True)
class Format:
    """A parsed ``|name:argument`` of a placeholder."""

    name: str
    argument: str | None = None


@functools.lru_cache(maxsize=1024)
def parse_format(name: str, argument: str | None) -> Format:
    """Check a format named in a placeholder; ``FormatError`` says what is wrong and what exists."""
    name = name.strip().lower()
    argument = argument.strip() if argument is not None and argument.strip() else None
    if name not in FORMATS:
        raise FormatError(f"unknown format {name!r}; use one of {', '.join(FORMATS)}")
    if name in ("date", "datetime", "time") and argument is not None and argument not in STYLES:
        if "%" not in argument:
            raise FormatError(
                f"{name}:{argument} is neither a style ({', '.join(STYLES)}) nor a pattern like %d/%m/%Y"
            )
        for flag, directive in _DIRECTIVE.findall(argument):
            if directive not in _STRFTIME and not (directive == "%" and not flag):
                raise FormatError(
                    f"%{flag}{directive} in {name}:{argument} is not a directive this server knows "
                    f"(use {' '.join('%' + d for d in _STRFTIME)})"
                )
    if name == "number" and argument is not None:
        if not argument.isdigit() or int(argument) > MAX_DECIMALS:
            raise FormatError(f"number:{argument}: give the decimals to show, 0 to {MAX_DECIMALS}")
    if name == "currency" and argument is not None and not re.fullmatch(r"[A-Za-z]{3}", argument):
        raise FormatError(f"currency:{argument}: give an ISO 4217 code like EUR, USD or MXN")
    return Format(name, argument.upper() if name == "currency" and argument else argument)


def write_value(value: object, regional: Regional, fmt: Format | None = None, typed: bool = False) -> str:
    """``value`` as text for a customer.

    ``fmt`` given: the value is read as a date or number first (texts too: "2026-12-24",
    "1.234,5") and written that way, else ``FormatError``. Without it, ``typed`` values (a
    contact's fields) are written the locale's way and others as they are.
    """
    if fmt is not None:
        return _formatted(value, regional, fmt)
    if isinstance(value, bool):
        if typed:
            yes, no = _YES_NO.get(regional.babel.language, ("yes", "no"))
            return yes if value else no
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _moment(as_utc(value).astimezone(regional.zone), regional, None, whole_day_as_date=True)
    if typed and isinstance(value, int | float) and math.isfinite(value):
        return _number(value, regional, None)
    return str(value)


def _formatted(value: object, regional: Regional, fmt: Format) -> str:
    if fmt.name in ("number", "currency"):
        try:
            number = coerce_value("NUMBER", None, value, regional)
        except InvalidInput:
            raise FormatError(f"{value!r} is not a number, so |{fmt.name} cannot write it") from None
        assert isinstance(number, int | float)
        if fmt.name == "number":
            return _number(number, regional, int(fmt.argument) if fmt.argument is not None else None)
        return _currency(number, regional, fmt.argument)
    try:
        moment = coerce_value("DATE", None, value, regional)
    except InvalidInput:
        raise FormatError(f"{value!r} is not a date, so |{fmt.name} cannot write it") from None
    assert isinstance(moment, datetime)
    local = moment.astimezone(regional.zone)
    if fmt.name == "date":
        return _day(local, regional, fmt.argument)
    if fmt.name == "time":
        return _clock(local, regional, fmt.argument)
    return _moment(local, regional, fmt.argument)


def _day(local: datetime, regional: Regional, style: str | None) -> str:
    if style is None:
        return format_skeleton("yMd", local.date(), locale=regional.babel)
    if style in STYLES:
        return format_date(local.date(), style, locale=regional.babel)
    return _strftime(local, style, regional)


def _clock(local: datetime, regional: Regional, style: str | None) -> str:
    if style is None or style in STYLES:
        return format_time(local.timetz(), style or "short", locale=regional.babel)
    return _strftime(local, style, regional)


def _moment(local: datetime, regional: Regional, style: str | None, whole_day_as_date: bool = False) -> str:
    """A date and time; a midnight (a day typed alone) shows as the day when ``whole_day_as_date``."""
    if whole_day_as_date and local.time() == time():
        return _day(local, regional, None)
    if style in STYLES:
        return format_datetime(local, style, tzinfo=local.tzinfo, locale=regional.babel)
    if style is not None:
        return _strftime(local, style, regional)
    pattern = regional.babel.datetime_formats["short"]
    return str(pattern).format(_clock(local, regional, None), _day(local, regional, None))


def _number(value: float, regional: Regional, decimals: int | None) -> str:
    if decimals is not None:
        decimals_range = (decimals, decimals)
    elif isinstance(value, int):
        decimals_range = (0, 0)
    else:
        decimals_range = (MIN_DECIMALS, MAX_DECIMALS)
    pattern = parse_pattern(regional.babel.decimal_formats.get(None) or "#,##0.###")
    pattern.frac_prec = decimals_range
    with localcontext() as context:
        context.rounding = ROUND_HALF_UP  # 2.5 -> 3, as shops round (babel's default is half-even)
        formatted: str = pattern.apply(Decimal(str(value)), regional.babel)  # babel is untyped
    return formatted


def _currency(value: float, regional: Regional, code: str | None) -> str:
    if code is None:
        territory = regional.babel.territory
        found = get_territory_currencies(territory) if territory else []
        if not found:
            raise FormatError(
                f"locale {regional.locale} has no country to take a currency from; write |currency:EUR"
            )
        code = found[0]
    try:
        with localcontext() as context:
            context.rounding = ROUND_HALF_UP
            return format_currency(Decimal(str(value)), code, locale=regional.babel)
    except UnknownCurrencyError:
        raise FormatError(f"currency:{code} is not an ISO 4217 currency code") from None


def _strftime(local: datetime, pattern: str, regional: Regional) -> str:
    """strftime's directives with the locale's names for months, weekdays and AM/PM."""
    locale = regional.babel

    def one(match: re.Match[str]) -> str:
        flag, directive = match.group(1), match.group(2)
        if directive == "%":
            return "%"
        text = _STRFTIME[directive](local, locale)
        return (text.lstrip("0") or "0") if flag == "-" else text

    return _DIRECTIVE.sub(one, pattern)


_STRFTIME = {
    "d": lambda m, loc: f"{m.day:02d}",
    "m": lambda m, loc: f"{m.month:02d}",
    "Y": lambda m, loc: f"{m.year:04d}",
    "y": lambda m, loc: f"{m.year % 100:02d}",
    "H": lambda m, loc: f"{m.hour:02d}",
    "I": lambda m, loc: f"{(m.hour % 12) or 12:02d}",
    "M": lambda m, loc: f"{m.minute:02d}",
    "S": lambda m, loc: f"{m.second:02d}",
    "p": lambda m, loc: str(get_period_names(locale=loc)["am" if m.hour < 12 else "pm"]),
    "B": lambda m, loc: str(get_month_names("wide", locale=loc)[m.month]),
    "b": lambda m, loc: str(get_month_names("abbreviated", locale=loc)[m.month]),
    "A": lambda m, loc: str(get_day_names("wide", locale=loc)[m.weekday()]),
    "a": lambda m, loc: str(get_day_names("abbreviated", locale=loc)[m.weekday()]),
}
