from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings

from messaging.routing import websocket_urlpatterns as messaging_websockets
from tenancy.asgi import BusinessHostASGIMiddleware

websocket_urlpatterns: list = [*messaging_websockets]  # /ws/inbox/, /ws/chat/ (business hosts), /ws/me/ (public)
# The websocket URLconf, for reverse(..., urlconf=WEBSOCKET_URLCONF) (config.websocket.socket_url).
urlpatterns = websocket_urlpatterns

allowed_origins = [f".{settings.PARLEY_DOMAIN}", settings.PARLEY_DOMAIN, "localhost", "127.0.0.1"]

websocket_application = OriginValidator(
    BusinessHostASGIMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    allowed_origins,
)
