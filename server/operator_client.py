"""A client of the operator API (``/operator/graphql``) for ``konvo workspace``.

The command talks to the running server rather than to the store: the server is what closes a
disabled workspace's sockets on every process, re-arms its timers when enabled, and rate-limits
and logs operator calls; the command needs only the URL and the operator key.
"""

from __future__ import annotations

from typing import Any

import httpx

WORKSPACE_FIELDS = "id name status timezone locale defaultCountry createdAt disabledAt"

CREATE = f"""mutation($i: CreateWorkspaceInput!) {{ createWorkspace(input: $i) {{
  adminKey workspace {{ {WORKSPACE_FIELDS} }} }} }}"""
LIST = f"""query($s: WorkspaceStatus, $after: String) {{ workspaces(status: $s, first: 100, after: $after) {{
  edges {{ node {{ {WORKSPACE_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
DISABLE = f"mutation($id: ID!) {{ disableWorkspace(id: $id) {{ {WORKSPACE_FIELDS} }} }}"
ENABLE = f"mutation($id: ID!) {{ enableWorkspace(id: $id) {{ {WORKSPACE_FIELDS} }} }}"
DELETE = """mutation($id: ID!) { deleteWorkspace(id: $id) {
  workspaceId documents redisKeys queuedJobs collections { collection count }
  finished undrainedReplicas } }"""


class OperatorError(Exception):
    """The server refused (``code`` from ``extensions.code``) or could not be reached."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class OperatorClient:
    def __init__(self, base_url: str, operator_key: str, timeout: float = 120.0) -> None:
        # Deleting a large workspace takes a while: the timeout is generous.
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, trust_env=False)
        self._key = operator_key
        self.base_url = base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, query: str, **variables: Any) -> dict[str, Any]:
        try:
            response = self._http.post(
                "/operator/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self._key}"},
            )
        except httpx.HTTPError as exc:
            raise OperatorError(f"cannot reach the server at {self.base_url}: {exc}") from None
        if response.status_code == 404:
            raise OperatorError(
                f"{self.base_url} has no operator API: start the server with KONVO_OPERATOR_KEY set",
                "NOT_FOUND",
            )
        try:
            body = response.json()
        except ValueError:
            raise OperatorError(f"the server answered HTTP {response.status_code}, not JSON") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            first = errors[0]
            raise OperatorError(str(first.get("message")), (first.get("extensions") or {}).get("code"))
        return dict(body["data"])

    def create(
        self, name: str, timezone: str, locale: str | None = None, default_country: str | None = None
    ) -> dict[str, Any]:
        spec = {"name": name, "timezone": timezone, "locale": locale, "defaultCountry": default_country}
        return dict(self.call(CREATE, i=spec)["createWorkspace"])

    def list_workspaces(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every workspace (all pages), oldest first."""
        found: list[dict[str, Any]] = []
        after = None
        while True:
            page = self.call(LIST, s=status.upper() if status else None, after=after)["workspaces"]
            found += [edge["node"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    def disable(self, workspace_id: str) -> dict[str, Any]:
        return dict(self.call(DISABLE, id=workspace_id)["disableWorkspace"])

    def enable(self, workspace_id: str) -> dict[str, Any]:
        return dict(self.call(ENABLE, id=workspace_id)["enableWorkspace"])

    def delete(self, workspace_id: str) -> dict[str, Any]:
        return dict(self.call(DELETE, id=workspace_id)["deleteWorkspace"])
