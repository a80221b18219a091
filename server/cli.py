"""The ``konvo`` command: ``serve`` runs the server (embedded services by default), ``chat`` plays
a sandbox customer through the API, ``workspace`` is the operator's (``server/cli_workspace.py``),
``export-schema`` writes the GraphQL SDL."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from server.cli_workspace import workspace_app
from server.config import Settings, build_settings
from server.dev.embedded import (
    EmbeddedServiceError,
    EmbeddedServices,
    apply_local_defaults,
    port_is_free,
    start_services,
)
from server.secret_box import SecretKeyError, generate_key

app = typer.Typer(help="Konvo Flows server.", no_args_is_help=True, add_completion=False)
app.add_typer(workspace_app, name="workspace")


class _Shutdown(BaseException):
    """Raised by our SIGINT/SIGTERM handler outside uvicorn, so ``finally`` blocks run."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown(signum)


@app.callback()
def main() -> None:
    """Konvo Flows: self-hosted WhatsApp flow automation with a GraphQL API."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="HTTP bind address (env KONVO_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env KONVO_PORT)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="data, logs and pid files (env KONVO_DATA_DIR)")
    ] = None,
    store_port: Annotated[
        int | None, typer.Option(help="embedded SecantusDB port (env KONVO_STORE_PORT)")
    ] = None,
    redis_port: Annotated[int | None, typer.Option(help="embedded Redis port (env KONVO_REDIS_PORT)")] = None,
) -> None:
    """Start the embedded services (unless KONVO_MONGODB_URI / KONVO_REDIS_URL are set),
    seed the demo workspace, and serve GraphQL until Ctrl-C / SIGTERM."""
    settings = build_settings(
        host=host, port=port, data_dir=data_dir, store_port=store_port, redis_port=redis_port
    )
    # Our handlers stay installed around uvicorn's: uvicorn restores them after its
    # graceful shutdown and re-raises the signal, which lands here as _Shutdown.
    signal.signal(signal.SIGINT, _raise_shutdown)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    services = EmbeddedServices()
    try:
        if not port_is_free(settings.port, settings.host):
            raise EmbeddedServiceError(
                f"port {settings.port} for the HTTP server is already in use; "
                "choose a free one with KONVO_PORT / --port"
            )
        apply_local_defaults(settings, embedded_store=settings.embedded_store)
        services = start_services(settings)
        if services.mongodb_uri is not None:
            settings.mongodb_uri = services.mongodb_uri
        if services.redis_url is not None:
            settings.redis_url = services.redis_url
        _run(settings)
    except _Shutdown:
        pass
    except (EmbeddedServiceError, SecretKeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        # A second Ctrl-C must not interrupt the stop and leave a process behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.stop()


def _run(settings: Settings) -> None:
    """Seed, then run uvicorn in this process; the banner appears once HTTP is listening."""
    import uvicorn

    from server.dev.seed import seed_demo
    from server.redaction import configure_logging
    from server.web.app import create_app
    from server.web.heap import settle_after_startup

    configure_logging(settings.log_level)
    api_key = asyncio.run(seed_demo(settings))
    banner = (
        "Konvo Flows server running\n"
        f"GraphQL: http://{settings.host}:{settings.port}/graphql\n"
        f"API key: {api_key}"
    )

    class _Server(uvicorn.Server):
        """Prints the banner after the socket is bound, so readers can connect at once."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                settle_after_startup()
                print(banner, flush=True)

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # The app closes messages over the limit with 4400 (server/graphql/ws_messages.py); the
        # transport drops (1009) those far larger before holding them whole in memory.
        ws_max_size=2 * settings.max_ws_frame_bytes,
    )
    server = _Server(config)
    server.run()
    if not server.started:
        # uvicorn logged why (e.g. the port was taken meanwhile); exit like `uvicorn` does.
        raise typer.Exit(3)


@app.command("operator-key")
def operator_key() -> None:
    """Print a new random key for KONVO_OPERATOR_KEY (the operator API and `konvo workspace`)."""
    typer.echo(secrets.token_urlsafe(32))


@app.command("secret-key")
def secret_key() -> None:
    """Print a new key for KONVO_SECRET_KEY (put it first, keep the old one after it until a restart
    has re-sealed the stored secrets)."""
    typer.echo(generate_key())


@app.command("export-schema")
def export_schema(
    output: Annotated[Path, typer.Option(help="where to write the SDL")] = Path("schema.graphql"),
    operator_output: Annotated[Path, typer.Option(help="where to write the operator API's SDL")] = Path(
        "operator.graphql"
    ),
    check: Annotated[bool, typer.Option(help="only compare; exit 1 when a file is out of date")] = False,
) -> None:
    """Write the GraphQL schemas (SDL) printed from the code, for frontends and code generators: the
    tenant API's and the operator API's."""
    from server.graphql.sdl import operator_sdl, schema_sdl

    files = ((output, schema_sdl()), (operator_output, operator_sdl()))
    if check:
        stale = [path for path, sdl in files if (path.read_text() if path.exists() else "") != sdl]
        for path in stale:
            typer.echo(f"{path} is out of date; run: konvo export-schema", err=True)
        if stale:
            raise typer.Exit(1)
        return
    for path, sdl in files:
        path.write_text(sdl)
        typer.echo(f"wrote {path} ({len(sdl.splitlines())} lines)")


@app.command()
def chat(
    phone: Annotated[
        str,
        typer.Argument(
            help="the customer's phone number (E.164, e.g. +34600111222), or the BSUID of a customer "
            "who shares no number (e.g. US.13491208655302741918)"
        ),
    ],
    url: Annotated[
        str | None, typer.Option(help="server base URL (default http://KONVO_HOST:KONVO_PORT)")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="KONVO_API_KEY", help="API key (default: the demo key in KONVO_DATA_DIR)"),
    ] = None,
    username: Annotated[
        str | None, typer.Option(help="the WhatsApp username the customer shows (display only)")
    ] = None,
) -> None:
    """Chat as a sandbox customer: type to send, type a button's number to press it."""
    from server.dev.chat import ChatError
    from server.dev.chat import chat as run_chat

    settings = build_settings()
    if api_key is None:
        key_file = settings.data_dir / "demo-api-key"
        if not key_file.exists():
            typer.echo(f"error: no --api-key given and no {key_file}; start `konvo serve` first", err=True)
            raise typer.Exit(2)
        api_key = key_file.read_text().strip()
    base_url = url or f"http://{settings.host}:{settings.port}"
    try:
        asyncio.run(run_chat(base_url, api_key, phone, username))
    except ChatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    app()
