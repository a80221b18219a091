"""HTTP routes of triggers: ``POST /hooks/{trigger_id}`` (mounted by ``server/web/app.py``, whose
middleware caps the body size)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.services import Services
from server.triggers.webhooks import receive


def hook_routes(services: Services) -> list[Route]:
    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        outcome = await receive(services, request.path_params["trigger_id"], body, request.headers)
        return JSONResponse(outcome.body, status_code=outcome.status)

    return [Route("/hooks/{trigger_id}", hook, methods=["POST"])]
