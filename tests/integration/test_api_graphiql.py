"""GraphiQL at /graphql for a browser, with every asset served by this server (works offline)."""

from __future__ import annotations

import re

import httpx

from server.runtime import Runtime
from server.web.app import create_app


async def test_graphiql_page_uses_only_local_assets_that_are_served(runtime: Runtime) -> None:
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "GraphiQL" in html and "graphqlWs.createClient" in html
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(urls) >= 5, urls
        assert all(u.startswith("/graphql/assets/") for u in urls), urls
        assert not re.search(r"https?://", html), "the page must not load anything from another host"
        for url in urls:
            asset = await http.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
            assert asset.headers["content-type"].split(";")[0] in ("text/javascript", "text/css"), url
        assert (await http.get("/graphql/assets/../../etc/passwd")).status_code == 404
        assert (await http.get("/graphql/assets/nope.js")).status_code == 404
        # A program asking for JSON still gets GraphQL, not the page.
        answer = await http.get(
            "/graphql", params={"query": "{ __typename }"}, headers={"Accept": "application/json"}
        )
        assert answer.json() == {"data": {"__typename": "Query"}}
