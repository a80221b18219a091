"""Omitted nullable arguments reach resolvers as ``None``.

A resolver parameter typed ``X | None`` without a Python default is optional in GraphQL, but
strawberry then calls the resolver without it and Python raises ``TypeError`` (an internal
error for a legal request). Giving such arguments the default ``null`` makes "omitted" mean
"null" for every root field, whichever module defines it; the SDL shows ``= null``.
"""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types.base import StrawberryOptional, has_object_definition
from strawberry.types.unset import UNSET


def default_omitted_to_null(*roots: type | None) -> None:
    """Set ``default=None`` on every nullable, default-less argument of the roots' fields."""
    for root in roots:
        if root is None or not has_object_definition(root):
            continue
        for field in root.__strawberry_definition__.fields:
            for argument in field.arguments:
                if argument.default is UNSET and isinstance(argument.type, StrawberryOptional):
                    argument.default = None


# A contact named by an API argument: ``phone`` as before, or ``whatsappId`` (server/identity.py).
Phone = Annotated[
    str | None, strawberry.argument(description="the customer's phone number (or name them by whatsappId)")
]
WhatsappId = Annotated[
    str | None,
    strawberry.argument(
        description="the customer's WhatsApp identity instead of phone: a phone number or a "
        "business-scoped user ID (BSUID, e.g. US.13491208655302741918) for customers without one"
    ),
]
