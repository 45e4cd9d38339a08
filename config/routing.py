from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware
from django.conf import settings

from messaging.routing import websocket_urlpatterns as messaging_websockets
from tenancy.asgi import BusinessHostASGIMiddleware

websocket_urlpatterns: list = [*messaging_websockets]  # /ws/inbox/, /ws/chat/ (business hosts), /ws/me/ (public)
# The websocket URLconf, for reverse(..., urlconf=WEBSOCKET_URLCONF) (config.websocket.socket_url).
urlpatterns = websocket_urlpatterns

allowed_origins = [f".{settings.PARLEY_DOMAIN}", settings.PARLEY_DOMAIN, "localhost", "127.0.0.1"]


class SessionFromCookie:
    """`scope["session"]`: the session store for the session cookie, not loaded yet.

    Consumers read it on a database thread, in the one call that also checks their rights
    (messaging.revocation's admissions). Channels' AuthMiddlewareStack would instead load the
    session and the user for every socket on the process's single shared sync thread before the
    consumer runs: after a server restart every client reconnects at once, and those handshakes
    queued on that one thread past the server's handshake timeout."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session = store(scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME))
        return await self.app(dict(scope, session=session), receive, send)


websocket_application = OriginValidator(
    BusinessHostASGIMiddleware(CookieMiddleware(SessionFromCookie(URLRouter(websocket_urlpatterns)))),
    allowed_origins,
)
