"""Who may call a field, declared on the field itself so a reviewer (and a test) can read it.

Every root field of ``Query``/``Mutation``/``Subscription`` names its rule::

    @strawberry.mutation(permission_classes=ADMIN_ONLY)   # flows, templates, keys, channels...
    @strawberry.field(permission_classes=ANY_ROLE)        # inbox, contacts' tags and variables

Roles: ADMIN may do everything; AGENT works the inbox (conversations, contacts' tags and
variables, agent messages) and manages nothing. ``tests/integration/test_api_roles.py`` walks
the schema and checks every ``ADMIN_ONLY`` field refuses an AGENT key, so new fields are covered
as soon as they carry the rule.
"""

from __future__ import annotations

from typing import Any, Protocol

import strawberry
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types.field import StrawberryField

from server.errors import Forbidden, KonvoError, Unauthenticated, WorkspaceDisabled
from server.store.workspaces import ADMIN


def auth_failure(code: str | None, message: str | None) -> KonvoError:
    """Why a request has no workspace: no or an unknown key (UNAUTHENTICATED), or a key of a
    workspace the operator disabled (WORKSPACE_DISABLED)."""
    text = message or "authentication required"
    return WorkspaceDisabled(text) if code == WorkspaceDisabled.code else Unauthenticated(text)


class Caller(Protocol):
    """What the rules read from the request's context (``server.graphql.context.Context``, which
    imports this module, so it is named here by the fields the rules use)."""

    @property
    def workspace_id(self) -> str | None: ...

    @property
    def role(self) -> str | None: ...

    @property
    def auth_code(self) -> str: ...

    @property
    def auth_error(self) -> str | None: ...


def _check_authenticated(info: strawberry.Info[Caller, None]) -> Caller:
    context = info.context
    if context.workspace_id is None:
        raise auth_failure(context.auth_code, context.auth_error)
    return context


class Authenticated(BasePermission):
    """Any valid API key of the workspace, whatever its role."""

    message = "authentication required"

    def has_permission(self, source: object, info: strawberry.Info[Caller, None], **kwargs: Any) -> bool:
        _check_authenticated(info)
        return True

    def on_unauthorized(self) -> None:
        raise Unauthenticated(self.message)


class AdminOnly(BasePermission):
    """Only an ADMIN key: configuration (flows, templates, catalog, channels, keys, triggers)."""

    message = "this API key's role cannot do that; an ADMIN key is needed"

    def has_permission(self, source: object, info: strawberry.Info[Caller, None], **kwargs: Any) -> bool:
        # Raising (rather than returning False) lets the caller tell "who are you?" from "not you".
        if _check_authenticated(info).role != ADMIN:
            raise Forbidden(self.message)
        return True

    def on_unauthorized(self) -> None:
        raise Forbidden(self.message)


ADMIN_ONLY: list[type[BasePermission]] = [AdminOnly]
ANY_ROLE: list[type[BasePermission]] = [Authenticated]


def permission_classes_of(field: StrawberryField) -> set[type[BasePermission]]:
    """The permission classes on a field, whether given as ``permission_classes`` or an extension."""
    found = set(field.permission_classes or ())
    for extension in field.extensions:
        if isinstance(extension, PermissionExtension):
            found.update(type(p) for p in extension.permissions)
    return found


def is_admin_only(field: StrawberryField) -> bool:
    return AdminOnly in permission_classes_of(field)


def declares_roles(field: StrawberryField) -> bool:
    """True when the field says who may call it (ADMIN_ONLY or ANY_ROLE)."""
    return bool(permission_classes_of(field) & {AdminOnly, Authenticated})
