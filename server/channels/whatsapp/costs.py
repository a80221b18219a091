"""What a template send costs: Meta's rate card (data in ``rate_card.json``) applied to a recipient.

Meta charges per delivered template message by category and the recipient's country calling
code; each code belongs to one market (a country, North America or a regional group), and a
country on no row is priced as the card's ``fallback_market`` ("Other"). The card's ``rules``
say which sends are free (utility inside an open customer-service window). ``estimate`` runs
before sending (and for flow and broadcast estimates), ``reconcile`` when a status webhook brings
Meta's own ``pricing`` block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

RATE_CARD_PATH = Path(__file__).with_name("rate_card.json")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")

# ITU-T E.164 country calling codes -> ISO 3166 country; the longest matching prefix wins
# ("1242" Bahamas before "1" United States, "77" Kazakhstan before "7" Russia). +1 is shared: the
# Caribbean members have their own area codes below, Canada's area codes map to CA and any other
# +1 number to US (US and CA are one market, North America).
_CANADA = """
204 226 236 249 250 263 289 306 343 354 365 367 368 382 403 416 418 428 431 437 438 450 468 474
506 514 519 548 579 581 584 587 604 613 639 647 672 683 705 709 742 753 778 780 782 807 819 825
867 873 879 902 905 942
"""
_CODES = """
1:US 1242:BS 1246:BB 1264:AI 1268:AG 1284:VG 1340:VI 1345:KY 1441:BM 1473:GD 1649:TC 1664:MS
1670:MP 1671:GU 1684:AS 1721:SX 1758:LC 1767:DM 1784:VC 1787:PR 1809:DO 1829:DO 1849:DO 1868:TT
1658:JM 1869:KN 1876:JM 1939:PR 20:EG 211:SS 212:MA 213:DZ 216:TN 218:LY 220:GM 221:SN 222:MR 223:ML
224:GN 225:CI 226:BF 227:NE 228:TG 229:BJ 230:MU 231:LR 232:SL 233:GH 234:NG 235:TD 236:CF 237:CM
238:CV 239:ST 240:GQ 241:GA 242:CG 243:CD 244:AO 245:GW 248:SC 249:SD 250:RW 251:ET 252:SO 253:DJ
254:KE 255:TZ 256:UG 257:BI 258:MZ 260:ZM 261:MG 262:RE 263:ZW 264:NA 265:MW 266:LS 267:BW 268:SZ
269:KM 27:ZA 290:SH 291:ER 297:AW 298:FO 299:GL 30:GR 31:NL 32:BE 33:FR 34:ES 350:GI 351:PT 352:LU
353:IE 354:IS 355:AL 356:MT 357:CY 358:FI 359:BG 36:HU 370:LT 371:LV 372:EE 373:MD 374:AM 375:BY
376:AD 377:MC 378:SM 380:UA 381:RS 382:ME 383:XK 385:HR 386:SI 387:BA 389:MK 39:IT 40:RO 41:CH
420:CZ 421:SK 423:LI 43:AT 44:GB 45:DK 46:SE 47:NO 48:PL 49:DE 500:FK 501:BZ 502:GT 503:SV 504:HN
505:NI 506:CR 507:PA 508:PM 509:HT 51:PE 52:MX 53:CU 54:AR 55:BR 56:CL 57:CO 58:VE 590:GP 591:BO
592:GY 593:EC 594:GF 595:PY 596:MQ 597:SR 598:UY 599:CW 60:MY 61:AU 62:ID 63:PH 64:NZ 65:SG 66:TH
670:TL 672:NF 6721:AQ 673:BN 674:NR 675:PG 676:TO 677:SB 678:VU 679:FJ 680:PW 681:WF 682:CK 683:NU
685:WS 686:KI 687:NC 688:TV 689:PF 690:TK 691:FM 692:MH 7:RU 76:KZ 77:KZ 81:JP 82:KR 84:VN 850:KP
852:HK 853:MO 855:KH 856:LA 86:CN 880:BD 886:TW 90:TR 91:IN 92:PK 93:AF 94:LK 95:MM 960:MV 961:LB
962:JO 963:SY 964:IQ 965:KW 966:SA 967:YE 968:OM 970:PS 971:AE 972:IL 973:BH 974:QA 975:BT 976:MN
977:NP 98:IR 992:TJ 993:TM 994:AZ 995:GE 996:KG 998:UZ
"""
CALLING_CODES: dict[str, str] = dict(item.split(":") for item in _CODES.split())
CALLING_CODES.update({f"1{area}": "CA" for area in _CANADA.split()})
_LONGEST = max(len(code) for code in CALLING_CODES)


def country_of(phone: str) -> str | None:
    """ISO country of an E.164 number by its calling code, or None when the code is unknown."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    for length in range(min(_LONGEST, len(digits)), 0, -1):
        found = CALLING_CODES.get(digits[:length])
        if found:
            return found
    return None


@dataclass(frozen=True)
class RateCard:
    currency: str
    valid_from: str
    source: str
    rules: dict[str, Any]
    markets: dict[str, dict[str, Any]] = field(default_factory=dict)  # country -> market row
    fallback: dict[str, Any] | None = None  # the row of any country not listed ("Other")

    def rate(self, category: str, country: str | None) -> tuple[str | None, float | None]:
        """(market, price per message) for a category and country; (None, None) when not on the card."""
        row = (self.markets.get(country) or self.fallback) if country else None
        if row is None or category not in row:
            return None, None
        return str(row["market"]), float(row[category])


@lru_cache(maxsize=4)
def load_rate_card(path: Path = RATE_CARD_PATH) -> RateCard:
    data = json.loads(path.read_text(encoding="utf-8"))
    markets = {country: row for row in data["markets"] for country in row["countries"]}
    fallback = next((row for row in data["markets"] if row["market"] == data.get("fallback_market")), None)
    return RateCard(
        data["currency"], data["valid_from"], data["source"], data.get("rules") or {}, markets, fallback
    )


def estimate(category: str, phone: str, window_open: bool, card: RateCard | None = None) -> dict[str, Any]:
    """The expected charge of one template send (``amount`` None when the country is not on the card)."""
    card = card or load_rate_card()
    category = category.upper()
    country = country_of(phone)
    market, price = card.rate(category, country)
    result: dict[str, Any] = {
        "category": category,
        "country": country,
        "market": market,
        "currency": card.currency,
        "rate_card": card.valid_from,
        "billable": True,
        "amount": price,
        "reason": "rate card",
    }
    if window_open and card.rules.get(f"{category.lower()}_free_in_window"):
        result.update(billable=False, amount=0.0, reason="free inside the customer-service window")
    elif price is None:
        result["reason"] = (
            f"no {category} rate for {country or 'this number'} on the {card.valid_from} rate card"
        )
    return result


FREE_PRICING_TYPES = ("free_customer_service", "free_entry_point")
FREE_CATEGORIES = ("service", "referral_conversion")


def reconcile(
    message: dict[str, Any], pricing: dict[str, Any] | None, card: RateCard | None = None
) -> dict[str, Any]:
    """Changes to ``$set`` on the message from a status webhook's ``pricing`` block (``cost_actual``).

    Meta's block says whether the message was billable and under which category/pricing type; the
    amount comes from the rate card for that category and the recipient's country.
    """
    if not pricing:
        return {}
    card = card or load_rate_card()
    category = str(pricing.get("category") or "").lower()
    pricing_type = str(pricing.get("type") or "").lower()
    country = (message.get("cost_estimate") or {}).get("country") or country_of(
        str(message.get("phone") or "")
    )
    actual: dict[str, Any] = {
        "currency": card.currency,
        "rate_card": card.valid_from,
        "billable": bool(pricing.get("billable", True)),
        "category": category.upper() or None,
        "pricing_model": pricing.get("pricing_model"),
        "type": pricing.get("type"),
        "country": country,
    }
    if not actual["billable"] or pricing_type in FREE_PRICING_TYPES or category in FREE_CATEGORIES:
        actual.update(billable=False, amount=0.0)
    else:
        actual["amount"] = card.rate(category.upper(), country)[1]
    return {"cost_actual": actual}
