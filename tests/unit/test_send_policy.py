"""The send policy's pure parts: quiet-hours arithmetic, contact zones, refusals and backoffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.errors import InvalidInput
from server.machines.turn import Turn
from server.sending.quiet_hours import quiet_until
from server.sending.rules import MARKETING_TO_US, NO_OPT_IN, WINDOW_CLOSED, deferral, refusal
from server.sending.settings import parse_quiet_hours, settings_from_document
from server.sending.zones import contact_zone, recipient_country

MADRID = ZoneInfo("Europe/Madrid")
EVERY_DAY = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
NIGHTS = parse_quiet_hours([{"days": EVERY_DAY, "start": "21:00", "end": "09:00"}])


def local(text: str, zone: ZoneInfo = MADRID) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def test_inside_a_night_window_the_hold_ends_at_its_end() -> None:
    # 2026-11-18 is a Wednesday.
    assert quiet_until(NIGHTS, local("2026-11-18T22:30"), MADRID) == local("2026-11-19T09:00")
    assert quiet_until(NIGHTS, local("2026-11-19T03:00"), MADRID) == local("2026-11-19T09:00")


def test_the_edges_start_quiet_and_end_loud() -> None:
    assert quiet_until(NIGHTS, local("2026-11-18T21:00"), MADRID) == local("2026-11-19T09:00")
    assert quiet_until(NIGHTS, local("2026-11-19T09:00"), MADRID) is None
    assert quiet_until(NIGHTS, local("2026-11-18T20:59"), MADRID) is None


def test_a_weeknight_runs_into_a_whole_weekend() -> None:
    windows = parse_quiet_hours(
        [
            {"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "20:00", "end": "08:00"},
            {"days": ["SAT", "SUN"], "start": "00:00", "end": "24:00"},
        ]
    )
    friday_night = local("2026-11-20T23:00")  # Friday
    assert quiet_until(windows, friday_night, MADRID) == local("2026-11-23T00:00")  # Monday 00:00
    # Sunday 20:00 -> 24:00, then Monday is not a quiet day until its own 20:00.
    assert quiet_until(windows, local("2026-11-22T12:00"), MADRID) == local("2026-11-23T00:00")


def test_a_window_on_listed_days_only() -> None:
    weekdays = parse_quiet_hours([{"days": ["MON"], "start": "21:00", "end": "09:00"}])
    assert quiet_until(weekdays, local("2026-11-16T22:00"), MADRID) == local("2026-11-17T09:00")  # Mon
    assert quiet_until(weekdays, local("2026-11-17T05:00"), MADRID) == local("2026-11-17T09:00")  # Tue am
    assert quiet_until(weekdays, local("2026-11-17T22:00"), MADRID) is None  # Tue night


def test_wall_clock_hours_hold_across_a_daylight_saving_change() -> None:
    # Spain moves from CEST to CET on 2026-10-25 at 03:00: the night is one hour longer.
    start = local("2026-10-24T23:00")
    end = quiet_until(NIGHTS, start, MADRID)
    assert end == local("2026-10-25T09:00")
    assert end is not None and end - start == timedelta(hours=11)


def test_start_equal_to_end_is_the_whole_day() -> None:
    whole = parse_quiet_hours([{"days": ["SUN"], "start": "00:00", "end": "00:00"}])
    assert quiet_until(whole, local("2026-11-22T15:00"), MADRID) == local("2026-11-23T00:00")


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"days": [], "start": "21:00", "end": "09:00"}, "quietHours[0].days"),
        ({"days": ["MOON"], "start": "21:00", "end": "09:00"}, "quietHours[0].days"),
        ({"days": ["MON"], "start": "9pm", "end": "09:00"}, "quietHours[0].start"),
        ({"days": ["MON"], "start": "24:00", "end": "09:00"}, "quietHours[0].start"),
        ({"days": ["MON"], "start": "21:00", "end": "09:60"}, "quietHours[0].end"),
    ],
)
def test_bad_windows_are_refused_naming_the_field(window: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_quiet_hours([window])
    assert refused.value.details["field"] == field


def test_stored_settings_round_trip_and_default() -> None:
    assert settings_from_document(None).typing_indicator is True
    stored = settings_from_document(
        {"quiet_hours": [w.document() for w in NIGHTS], "typing_indicator": False}
    )
    assert stored.quiet_hours == NIGHTS and stored.typing_indicator is False


def test_the_contact_zone_comes_from_its_variable_then_its_phone_then_the_workspace() -> None:
    named = {"phone": "+34600111222", "variables": {"timezone": "America/Bogota"}}
    assert contact_zone(named, "Europe/Madrid") == (ZoneInfo("America/Bogota"), "contact")
    assert contact_zone({"phone": "+5491122334455"}, "Europe/Madrid")[1] == "phone"  # Argentina: one offset
    assert contact_zone({"phone": "+34600111222"}, "America/Bogota") == (MADRID, "phone")  # primary zone
    us = contact_zone({"phone": "+12125551234"}, "Europe/Madrid")  # several zones, none primary
    assert us == (MADRID, "workspace")
    bad = {"phone": "+34600111222", "variables": {"timezone": "Mars/Olympus"}}
    assert contact_zone(bad, "Europe/Madrid") == (MADRID, "workspace")  # the workspace's own country


def test_recipient_country_reads_phones_and_bsuids() -> None:
    assert recipient_country("+12125551234") == "US"
    assert recipient_country("+14165551234") == "CA"  # +1 shared: Toronto is Canada
    assert recipient_country("US.13491208655302741918") == "US"
    assert recipient_country(None) is None


NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_marketing_templates_to_us_numbers_are_refused_with_the_reason() -> None:
    message = {"kind": "template", "template_category": "MARKETING", "to": "+12125551234"}
    found = refusal({"opted_in": True}, message, NOW)
    assert found is not None and found.code == MARKETING_TO_US and "US" in found.reason
    utility = {**message, "template_category": "UTILITY"}
    assert refusal({"opted_in": True}, utility, NOW) is None
    spanish = {**message, "to": "+34600111222"}
    assert refusal({"opted_in": True}, spanish, NOW) is None
    assert refusal({"opted_in": False}, spanish, NOW).code == NO_OPT_IN  # type: ignore[union-attr]


def test_a_simple_message_that_outlived_the_window_is_refused() -> None:
    contact = {"last_inbound_at": NOW - timedelta(hours=25)}
    assert refusal(contact, {"kind": "text", "to": "+34600111222"}, NOW).code == WINDOW_CLOSED  # type: ignore[union-attr]
    assert refusal({"last_inbound_at": NOW - timedelta(hours=1)}, {"kind": "text"}, NOW) is None


def test_131049_backs_off_in_hours_then_gives_up() -> None:
    first = deferral("131049", 0, NOW)
    second = deferral("131049", 1, NOW)
    assert first is not None and first.until - NOW == timedelta(hours=24) and first.attempt == 1
    assert second is not None and second.until - NOW == timedelta(hours=48) and second.attempt == 2
    assert deferral("131049", 2, NOW) is None
    assert deferral("131026", 0, NOW) is None  # not a "later" code


def test_131056_is_paced_per_recipient_in_powers_of_four() -> None:
    waits = [deferral("131056", n, NOW) for n in range(5)]
    assert [w.until - NOW for w in waits if w] == [timedelta(seconds=4**x) for x in range(5)]
    assert all(w is not None and w.whole_contact for w in waits)
    assert deferral("131056", 5, NOW) is None


def _turn_with_waiting_run(now: datetime) -> Any:
    contact = {
        "_id": "ws:+34600111222",
        "workspace_id": "ws",
        "phone": "+34600111222",
        "timers": [
            {
                "id": "tmr_noreply",
                "run_id": "run_1",
                "node": "ask",
                "kind": "no_reply",
                "due_at": now + timedelta(hours=1),
            }
        ],
        "runs": [
            {
                "id": "run_1",
                "flow_id": "f",
                "status": "waiting",
                "node": "ask",
                "steps": [],
                "waiting_for": {
                    "kind": "reply",
                    "node": "ask",
                    "timer_id": "tmr_noreply",
                    "due_at": now + timedelta(hours=1),
                },
            }
        ],
        "outbox": [
            {"id": "m1", "run_id": "run_1", "node": "ask", "kind": "text"},
            {"id": "m2", "run_id": "run_1", "node": "ask", "kind": "text"},
        ],
    }
    return Turn(contact=contact, now=now)


def test_a_hold_pushes_the_no_reply_time_back_with_a_fresh_timer() -> None:
    from server.sending import holds

    turn = _turn_with_waiting_run(NOW)
    holds.hold(turn, turn.contact["outbox"][0], NOW + timedelta(hours=10), holds.QUIET_HOURS)
    waiting = turn.contact["runs"][0]["waiting_for"]
    assert waiting["timer_id"] != "tmr_noreply" and waiting["due_at"] == NOW + timedelta(hours=11)
    kinds = sorted(t["kind"] for t in turn.contact["timers"])
    assert kinds == ["no_reply", "send"]  # the old no-reply timer is gone: when it fires it finds nothing
    [step] = turn.contact["runs"][0]["steps"]
    assert (step["action"], step["outcome"]) == ("message_held", "QUIET_HOURS")


def test_one_wake_releases_every_message_due_and_spends_their_timers() -> None:
    from server.sending import holds

    turn = _turn_with_waiting_run(NOW)
    morning = NOW + timedelta(hours=10)
    for message in turn.contact["outbox"]:
        holds.hold(turn, message, morning, holds.QUIET_HOURS)
    wakes = [t for t in turn.contact["timers"] if t["kind"] == holds.WAKE]
    assert len(wakes) == 2
    later = Turn(contact=turn.contact, now=morning)
    holds.wake(later, wakes[0])
    assert not any(holds.held(m, morning) for m in turn.contact["outbox"])
    assert [t for t in turn.contact["timers"] if t["kind"] == holds.WAKE] == []


def test_an_early_wake_keeps_a_timer_for_the_message_still_held() -> None:
    from server.sending import holds

    turn = _turn_with_waiting_run(NOW)
    message = turn.contact["outbox"][0]
    holds.hold(turn, message, NOW + timedelta(hours=10), holds.QUIET_HOURS)
    [wake] = [t for t in turn.contact["timers"] if t["kind"] == holds.WAKE]
    early = Turn(contact=turn.contact, now=NOW + timedelta(hours=9))
    holds.wake(early, wake)
    [again] = [t for t in turn.contact["timers"] if t["kind"] == holds.WAKE]
    assert again["id"] != wake["id"] and again["due_at"] == NOW + timedelta(hours=10)
    assert holds.held(message, NOW + timedelta(hours=9))
