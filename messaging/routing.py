from __future__ import annotations

from django.urls import path

from messaging import consumers

websocket_urlpatterns = [
    path("ws/inbox/", consumers.InboxConsumer.as_asgi()),
    path("ws/chat/", consumers.ChatConsumer.as_asgi()),
    path("ws/me/", consumers.MeConsumer.as_asgi()),
]
