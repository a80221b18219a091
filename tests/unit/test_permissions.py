"""Reading who may call a field: the schema guard tests (every root field declares a rule, every
ADMIN_ONLY field refuses an AGENT key) rely on these helpers finding the rule however it is
declared, and finding none where there is none."""

from __future__ import annotations

import strawberry
from strawberry.permission import PermissionExtension

from server.graphql.permissions import (
    ADMIN_ONLY,
    ANY_ROLE,
    AdminOnly,
    Authenticated,
    declares_roles,
    is_admin_only,
)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=ADMIN_ONLY)
    def by_classes(self) -> int:
        return 1

    @strawberry.field(extensions=[PermissionExtension(permissions=[AdminOnly()])])
    def by_extension(self) -> int:
        return 1

    @strawberry.field(permission_classes=ANY_ROLE)
    def any_role(self) -> int:
        return 1

    @strawberry.field(extensions=[PermissionExtension(permissions=[Authenticated()])])
    def any_role_by_extension(self) -> int:
        return 1

    @strawberry.field
    def undeclared(self) -> int:
        return 1


FIELDS = {f.python_name: f for f in Query.__strawberry_definition__.fields}  # type: ignore[attr-defined]


def test_admin_only_is_found_whether_declared_as_classes_or_as_an_extension() -> None:
    assert is_admin_only(FIELDS["by_classes"])
    assert is_admin_only(FIELDS["by_extension"])
    assert not is_admin_only(FIELDS["any_role"])
    assert not is_admin_only(FIELDS["any_role_by_extension"])
    assert not is_admin_only(FIELDS["undeclared"])


def test_a_field_without_a_rule_declares_no_roles() -> None:
    declared = {name for name, f in FIELDS.items() if declares_roles(f)}
    assert declared == {"by_classes", "by_extension", "any_role", "any_role_by_extension"}
