"""ASGI entry point: HTTP through Django, websockets through Channels.

Websocket routes are resolved after `config.routing.WebsocketScope` has found the
business from the Host header, so every consumer knows its tenant before authentication.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from config.memory import ReturnMemoryAfterCloses  # noqa: E402
from config.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    # After a burst of closed sockets their memory goes back to the OS (config/memory.py).
    {"http": django_asgi_app, "websocket": ReturnMemoryAfterCloses(websocket_application)}
)
