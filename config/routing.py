from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http import parse_cookie

from config.websocket import CloseCode
from messaging.routing import websocket_urlpatterns as messaging_websockets
from tenancy.asgi import business_for_host, host_from_scope

websocket_urlpatterns: list = [*messaging_websockets]  # /ws/inbox/, /ws/chat/ (business hosts), /ws/me/ (public)
# The websocket URLconf, for reverse(..., urlconf=WEBSOCKET_URLCONF) (config.websocket.socket_url).
urlpatterns = websocket_urlpatterns

allowed_origins = [f".{settings.PARLEY_DOMAIN}", settings.PARLEY_DOMAIN, "localhost", "127.0.0.1"]


class WebsocketScope:
    """What the consumers read from the handshake, in one copy of the scope:

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

    One middleware, not three (host, cookies, session): each layer keeps its own copy of the
    scope and its coroutine for as long as the socket is open (issue 9: 10,000 idle sockets)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        business = await business_for_host(host_from_scope(scope))
        if business is None and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CloseCode.NOT_FOUND})
            return None
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session = store(cookies.get(settings.SESSION_COOKIE_NAME))
        return await self.app(dict(scope, business=business, cookies=cookies, session=session), receive, send)


websocket_application = OriginValidator(WebsocketScope(URLRouter(websocket_urlpatterns)), allowed_origins)
