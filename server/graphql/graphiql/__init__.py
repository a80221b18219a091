"""GraphiQL served by the app itself, so the IDE works offline (no CDN).

The JavaScript and CSS come from the PyPI package ``graphene-django-graphiql-static`` (a plain
wheel of GraphiQL 2.1, React 17, graphql-ws and the explorer plugin; it has no dependencies and
Django is never imported: only its files are read). It is locked in ``uv.lock`` like every other
dependency, so a clean clone needs nothing but ``uv sync``. ``page.html`` is ours: it points at
``/graphql/assets/...`` and wires HTTP queries and ``graphql-transport-ws`` subscriptions to the
Authorization header typed in GraphiQL's header editor.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

ASSET_PACKAGE = "graphene_django_graphiql_static"
ASSET_PREFIX = "/graphql/assets/"
ASSETS = {
    "graphiql.min.css": "text/css",
    "graphiql.min.js": "text/javascript",
    "react.production.min.js": "text/javascript",
    "react-dom.production.min.js": "text/javascript",
    "graphql-ws.min.js": "text/javascript",
}
PAGE = Path(__file__).with_name("page.html")


@cache
def _asset(name: str) -> bytes:
    files = resources.files(ASSET_PACKAGE) / "static" / ASSET_PACKAGE
    return (files / name).read_bytes()


@cache
def page_html() -> str:
    return PAGE.read_text().replace("{{ASSETS}}", ASSET_PREFIX)


def render_page() -> HTMLResponse:
    return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    """``GET /graphql/assets/{name}``: one of the listed files, cached by the browser for a day."""
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        return PlainTextResponse("not found", status_code=404)
    return Response(_asset(name), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
