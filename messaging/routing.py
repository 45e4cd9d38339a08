from __future__ import annotations

from django.urls import path

from messaging import consumers

# Named so the pages reverse them (config.websocket.socket_url): no client hard-codes a path.
websocket_urlpatterns = [
    path("ws/inbox/", consumers.InboxConsumer.as_asgi(), name="ws_inbox"),
    path("ws/chat/", consumers.ChatConsumer.as_asgi(), name="ws_chat"),
    path("ws/me/", consumers.MeConsumer.as_asgi(), name="ws_me"),
]
