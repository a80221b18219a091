"""``konvo workspace``: the operator's commands over the running server's operator API.

``create`` prints the new workspace's first ADMIN key once; ``list``, ``disable``, ``enable`` and
``delete`` (asks to type the id unless ``--yes``). ``--json`` prints what the API answered, for
scripts. The server is found at ``--url`` or ``KONVO_URL`` (else ``http://KONVO_HOST:KONVO_PORT``); the key
is ``KONVO_OPERATOR_KEY`` (prefer the environment to ``--operator-key``: other users of the
machine can read a process's arguments).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from server.operator_client import OperatorClient, OperatorError

workspace_app = typer.Typer(
    help="Create, list, disable, enable and delete workspaces (needs KONVO_OPERATOR_KEY).",
    no_args_is_help=True,
)

Url = Annotated[
    str | None,
    typer.Option(envvar="KONVO_URL", help="server base URL (default http://KONVO_HOST:KONVO_PORT)"),
]
OperatorKey = Annotated[
    str | None,
    typer.Option(envvar="KONVO_OPERATOR_KEY", show_envvar=True, help="the server's operator key"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print the API's answer as JSON")]


@contextmanager
def _client(url: str | None, operator_key: str | None) -> Iterator[OperatorClient]:
    if not operator_key:
        typer.echo("error: set KONVO_OPERATOR_KEY (the key the server was started with)", err=True)
        raise typer.Exit(2)
    with OperatorClient(url or _local_url(), operator_key) as client:
        yield client


def _local_url() -> str:
    """The server these settings would run (``KONVO_HOST``/``KONVO_PORT``)."""
    from pydantic import ValidationError

    from server.config import build_settings

    try:
        settings = build_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        typer.echo(f"error: {first['loc'][0] if first['loc'] else 'settings'}: {first['msg']}", err=True)
        raise typer.Exit(2) from None
    return f"http://{settings.host}:{settings.port}"


def _run(url: str | None, operator_key: str | None, action: Callable[[OperatorClient], Any]) -> Any:
    with _client(url, operator_key) as client:
        try:
            return action(client)
        except OperatorError as exc:
            code = f"{exc.code}: " if exc.code else ""
            typer.echo(f"error: {code}{exc}", err=True)
            raise typer.Exit(1) from None


def _describe(workspace: dict[str, Any]) -> str:
    country = workspace.get("defaultCountry") or "-"
    return (
        f"{workspace['id']}  {workspace['status']:<8}  {workspace['timezone']}  {workspace['locale']}  "
        f"{country}  {workspace['name']}"
    )


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


@workspace_app.command()
def create(
    name: Annotated[str, typer.Argument(help="the workspace's name, e.g. the shop's")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Madrid")],
    locale: Annotated[
        str | None, typer.Option(help="BCP 47 locale, e.g. es-ES (default: the country's)")
    ] = None,
    country: Annotated[
        str | None, typer.Option(help="ISO 3166 country national phone numbers belong to, e.g. ES")
    ] = None,
    url: Url = None,
    operator_key: OperatorKey = None,
    as_json: AsJson = False,
) -> None:
    """Create a workspace and print its first ADMIN API key (shown this once)."""
    created = _run(url, operator_key, lambda client: client.create(name, timezone, locale, country))
    if as_json:
        _print_json(created)
        return
    typer.echo(f"created  {_describe(created['workspace'])}")
    typer.echo("ADMIN API key (shown only now; store it safely):")
    typer.echo(created["adminKey"])


@workspace_app.command("list")
def list_workspaces(
    status: Annotated[str | None, typer.Option(help="only active, disabled or deleting ones")] = None,
    url: Url = None,
    operator_key: OperatorKey = None,
    as_json: AsJson = False,
) -> None:
    """List the workspaces, oldest first: id, status, time zone, locale, country, name."""
    found = _run(url, operator_key, lambda client: client.list_workspaces(status))
    if as_json:
        _print_json(found)
        return
    for workspace in found:
        typer.echo(_describe(workspace))


def _show(found: dict[str, Any], as_json: bool, done: str) -> None:
    """One workspace after an operator's change: as JSON, or a line saying what was done."""
    if as_json:
        _print_json(found)
    else:
        typer.echo(f"{done}{_describe(found)}")


@workspace_app.command()
def disable(
    workspace_id: Annotated[str, typer.Argument(help="the workspace's id")],
    url: Url = None,
    operator_key: OperatorKey = None,
    as_json: AsJson = False,
) -> None:
    """Stop a workspace: keys refused, webhooks answered 410, timers held (nothing is deleted)."""
    found = _run(url, operator_key, lambda client: client.disable(workspace_id))
    _show(found, as_json, "disabled ")


@workspace_app.command()
def enable(
    workspace_id: Annotated[str, typer.Argument(help="the workspace's id")],
    url: Url = None,
    operator_key: OperatorKey = None,
    as_json: AsJson = False,
) -> None:
    """Let a disabled workspace work again (held timers fire, paused broadcasts resume)."""
    found = _run(url, operator_key, lambda client: client.enable(workspace_id))
    _show(found, as_json, "enabled  ")


@workspace_app.command()
def delete(
    workspace_id: Annotated[str, typer.Argument(help="the workspace's id")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    url: Url = None,
    operator_key: OperatorKey = None,
    as_json: AsJson = False,
) -> None:
    """Delete a workspace and everything of it (store and Redis). Not undoable."""
    if not yes:
        typed = typer.prompt(f"This deletes {workspace_id} and all its data for good. Type its id to confirm")
        if typed.strip() != workspace_id:
            typer.echo("error: the id typed does not match; nothing was deleted", err=True)
            raise typer.Exit(1)
    deleted = _run(url, operator_key, lambda client: client.delete(workspace_id))
    if as_json:
        _print_json(deleted)
        return
    typer.echo(
        f"deleted  {deleted['workspaceId']}: {deleted['documents']} documents, "
        f"{deleted['redisKeys']} Redis keys, {deleted['queuedJobs']} queued jobs"
    )
    if not deleted.get("finished", True):
        where = ", ".join(deleted.get("undrainedReplicas") or []) or "the server"
        typer.echo(
            f"not finished: work of it may still have been running on {where}; "
            "it stays DELETING: run this command again to finish",
            err=True,
        )
        raise typer.Exit(1)
