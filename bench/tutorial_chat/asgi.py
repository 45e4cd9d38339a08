"""ASGI entry point of the tutorial chat: `python -m config.serve --app bench.tutorial_chat.asgi:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.tutorial_chat.consumers import ChatConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {"websocket": CookieMiddleware(URLRouter([re_path(r"^ws/(chat|inbox)/$", ChatConsumer.as_asgi())]))}
)
