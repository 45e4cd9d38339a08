"""ASGI entry point: HTTP through Django, websockets through Channels.

Websocket routes are resolved after `config.routing.WebsocketScope` has found the
business from the Host header, so every consumer knows its tenant before authentication.
"""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from collections.abc import Awaitable  # noqa: E402
from typing import Any  # noqa: E402

from config import memory  # noqa: E402
from config.routing import websocket_application  # noqa: E402
from config.websocket import frameless  # noqa: E402


class ProtocolRouter:
    """Channels' ProtocolTypeRouter without a coroutine of its own per connection: the chosen
    application's coroutine is returned, not awaited (config.websocket.frameless). After a burst
    of closed sockets their memory goes back to the OS: the consumers report their end
    (messaging.socket_task → config/memory.py)."""

    _asgi_single_callable = True

    def __init__(self, mapping: dict[str, Any]) -> None:
        self.mapping = mapping

    @frameless
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        try:
            application = self.mapping[scope["type"]]
        except KeyError:
            raise ValueError(f"No application configured for scope type {scope['type']!r}") from None
        return application(scope, receive, send)  # type: ignore[no-any-return]


application = ProtocolRouter({"http": django_asgi_app, "websocket": websocket_application})


def _load_urlconfs() -> None:
    """Import both URLconfs (and so every view module) now, not in the first request that
    resolves a URL: measured, a fresh server's first POST to the batch endpoint spent ~0.1 s of
    CPU importing the tenant URLconf's views (LocaleMiddleware asks whether any pattern has a
    language prefix), in the request's time. Before the freeze below: they live as long as the
    process."""
    from django.conf import settings
    from django.urls import get_resolver

    for urlconf in (settings.ROOT_URLCONF, settings.PUBLIC_SCHEMA_URLCONF):
        get_resolver(urlconf).url_patterns  # noqa: B018  (a cached property: loads the module)


_load_urlconfs()

# Everything loaded so far lives as long as the process: out of the collector's full passes.
# Each pass walked the ~110,000 objects of Django and the app (~75 ms, measured) with the whole
# process stopped — the event loop, and database threads holding the stream counter's row
# lock, which every writer of the business then waited for (issue 9: event-loop stalls of
# 100–400 ms under load). Objects made later (sockets, their cycles) are collected as before;
# start-up's own garbage is collected once first, so nothing unreachable is frozen.
# The socket path's lazy imports are made first (config.memory.warm_up), so they are frozen too
# and do not land among the objects of the first sockets.
memory.warm_up()
gc.collect()
gc.freeze()
memory.tune_collector()

if memory.debug_enabled():  # PARLEY_MEMORY_DEBUG=1: the figures the passes' are compared with
    memory.log_memory_state("at start-up")
