"""GraphQL for the send policy's settings: quiet hours and the typing indicator (docs/sending.md).

Mixins of the root ``Query``/``Mutation`` like ``server/graphql/channels.py``.
"""

from __future__ import annotations

from enum import Enum

import strawberry

from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY, ANY_ROLE
from server.operations import sending as sending_ops
from server.sending.settings import WEEKDAYS, SendingSettings


@strawberry.enum
class Weekday(Enum):
    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"


@strawberry.type(description="quiet from start on each of days until end (the next day when end <= start)")
class QuietHoursWindow:
    days: list[Weekday]
    start: str = strawberry.field(description="HH:MM in the contact's time zone")
    end: str = strawberry.field(description="HH:MM; 24:00 is midnight at the end of the day")


@strawberry.input
class QuietHoursWindowInput:
    days: list[Weekday]
    start: str
    end: str


@strawberry.type
class SendingSettingsView:
    quiet_hours: list[QuietHoursWindow] = strawberry.field(
        description="automated messages (flows, broadcasts) due inside wait until the window ends; "
        "agents, answers to a customer who just wrote and transactional flows are never held"
    )
    typing_indicator: bool = strawberry.field(
        description="mark a customer's WhatsApp message read with the typing indicator when a flow answers it"
    )
    timezone: str = strawberry.field(
        description="the workspace's zone, used for contacts whose own zone is not known"
    )

    @classmethod
    def of(cls, settings: SendingSettings, timezone: str) -> SendingSettingsView:
        return cls(
            quiet_hours=[
                QuietHoursWindow(
                    days=[Weekday(WEEKDAYS[d]) for d in w.days],
                    start=w.document()["start"],
                    end=w.document()["end"],
                )
                for w in settings.quiet_hours
            ],
            typing_indicator=settings.typing_indicator,
            timezone=timezone,
        )


@strawberry.type
class SendingQuery:
    @strawberry.field(permission_classes=ANY_ROLE, name="sendingSettings")
    async def sending_settings(self, info: TenantInfo) -> SendingSettingsView:
        ctx = info.context
        return SendingSettingsView.of(*await sending_ops.sending_settings(ctx.services, ctx.workspace()))


@strawberry.type
class SendingMutation:
    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="set quiet hours (an empty list turns them off) and/or the typing indicator; "
        "what is not given is kept",
    )
    async def update_sending_settings(
        self,
        info: TenantInfo,
        quiet_hours: list[QuietHoursWindowInput] | None = None,
        typing_indicator: bool | None = None,
    ) -> SendingSettingsView:
        ctx = info.context
        windows = None
        if quiet_hours is not None:
            windows = [
                {"days": [d.value for d in w.days], "start": w.start, "end": w.end} for w in quiet_hours
            ]
        found = await sending_ops.update_sending_settings(
            ctx.services, ctx.admin_workspace(), windows, typing_indicator
        )
        return SendingSettingsView.of(*found)
