from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from importlib import import_module
from typing import Any
from urllib.parse import urlparse

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http import parse_cookie
from django.urls.exceptions import Resolver404

from config.websocket import CloseCode, frameless
from messaging.routing import websocket_urlpatterns as messaging_websockets
from tenancy.asgi import business_for_host, host_from_scope

websocket_urlpatterns: list = [*messaging_websockets]  # /ws/inbox/, /ws/chat/ (business hosts), /ws/me/ (public)
# The websocket URLconf, for reverse(..., urlconf=WEBSOCKET_URLCONF) (config.websocket.socket_url).
urlpatterns = websocket_urlpatterns

allowed_origins = [f".{settings.PARLEY_DOMAIN}", settings.PARLEY_DOMAIN, "localhost", "127.0.0.1"]


class WebsocketRoutes(URLRouter):
    """Channels' URLRouter (the same route matching) without a coroutine of its own: the
    consumer's is returned, not awaited, and the route goes into the scope given (ours, made by
    WebsocketScope) instead of a copy."""

    _asgi_single_callable = True

    @frameless
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        path = scope.get("path_remaining", scope.get("path"))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if "path_remaining" not in scope:
            root_path = scope.get("root_path", "")
            if root_path and not path.startswith(root_path):
                raise ValueError(f"No route found for path {path!r}.")
            path = path[len(root_path) :]
        path = path.lstrip("/")
        for route in self.routes:
            try:
                match = route.pattern.match(path)
            except Resolver404:
                continue
            if match:
                new_path, args, kwargs = match
                kwargs.update(route.default_args)
                outer = scope.get("url_route", {})
                scope["path_remaining"] = new_path
                scope["url_route"] = {
                    "args": outer.get("args", ()) + args,
                    "kwargs": {**outer.get("kwargs", {}), **kwargs},
                }
                return route.callback(scope, receive, send)  # type: ignore[no-any-return]
        raise ValueError(f"No route found for path {path!r}.")


class WebsocketScope:
    """What the consumers read from the handshake, in one copy of the scope:

    - the Origin checked first (Channels' OriginValidator rules and denial, merged in here);
    - `scope["business"]`: the business for the Host header (None for the public host). An
      unknown host is refused before any consumer runs. The schema is *not* set on a
      connection here: consumers enter the tenant context inside each database function.
    - `scope["cookies"]`: as Channels' CookieMiddleware (Django's request.COOKIES format).
    - `scope["session"]`: the session store for the session cookie, not loaded yet. Consumers
      read it on a database thread, in the one call that also checks their rights
      (messaging.revocation's admissions). Channels' AuthMiddlewareStack would instead load the
      session and the user for every socket on the process's single shared sync thread before
      the consumer runs: after a server restart every client reconnects at once, and those
      handshakes queued on that one thread past the server's handshake timeout.

    One middleware with one coroutine, not five (origin, host, cookies, session, router): each
    layer kept its own copy of the scope and its coroutine for as long as the socket was open
    (issue 9: 10,000 idle sockets). The server's scope is not kept: its name is rebound to ours."""

    def __init__(self, app: Any, origins: list[str] | None = None) -> None:
        self.app = app
        self.origins = OriginValidator(None, origins) if origins is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if self.origins is not None and not self.origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        scope = await self.consumer_scope(scope)  # the server's dict is not held from here on
        if scope["business"] is None and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": int(CloseCode.NOT_FOUND)})
            return None
        return await self.app(scope, receive, send)

    def origin_allowed(self, scope: dict[str, Any]) -> bool:
        assert self.origins is not None
        if scope["type"] != "websocket":
            raise ValueError("You cannot use OriginValidator on a non-WebSocket connection")
        parsed = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                with contextlib.suppress(UnicodeDecodeError):
                    parsed = urlparse(value.decode("latin1"))
        return bool(self.origins.valid_origin(parsed))

    @staticmethod
    async def consumer_scope(scope: dict[str, Any]) -> dict[str, Any]:
        business = await business_for_host(host_from_scope(scope))
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session = store(cookies.get(settings.SESSION_COOKIE_NAME))
        return dict(scope, business=business, cookies=cookies, session=session)


websocket_application = WebsocketScope(WebsocketRoutes(websocket_urlpatterns), allowed_origins)
