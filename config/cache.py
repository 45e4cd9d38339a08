"""The Redis cache with one connection pool per process, not one per cache instance.

Django keeps a cache instance per async context (`caches` is an asgiref `Local`), and its
`RedisCacheClient` keeps connection pools per instance. Under ASGI every websocket consumer
runs in a context of its own, so every socket that touched the cache (the session's revocation
check at connect, the send limits) opened a Redis connection of its own and kept it as long as
the socket lived: 10,000 idle sockets held ~10,000 Redis connections, until Redis refused new
clients ("max number of clients reached") for every process and test on the machine.
redis-py's pools are thread-safe and reset themselves after a fork, so one per server URL and
process serves every context; connections are then bounded by how many threads use the cache
at the same moment, not by how many sockets are open.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

from config.redis_wire import WireAddress, WireClient

_pools: dict[tuple[str, str], Any] = {}
_pools_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        # Caches configured alike share pools; another OPTIONS (say a client name) gets its own.
        self._pool_key = repr(sorted(options.items()))

    def _get_connection_pool(self, write: bool) -> Any:
        client: Any = self  # Django's private attributes, which the stubs leave out
        key = (client._servers[client._get_connection_pool_index(write)], self._pool_key)
        pool = _pools.get(key)
        if pool is None:
            with _pools_lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = client._pool_class.from_url(key[0], **client._pool_options)
        return pool


class SharedPoolRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> SharedPoolRedisCacheClient:
        backend: Any = self
        return SharedPoolRedisCacheClient(backend._servers, **backend._options)


def redis_cache_configured() -> bool:
    """Whether the default cache is Redis, from the setting: `isinstance(caches["default"], …)`
    makes a cache instance in every async context that asks (every socket's, every task's).
    Asked for every websocket send: kept until CACHES changes (tests' override_settings)."""
    global _redis_configured
    if _redis_configured is None:
        _redis_configured = _is_redis_backend(settings.CACHES["default"]["BACKEND"])
    return _redis_configured


_redis_configured: bool | None = None


@receiver(setting_changed)
def _forget_cache_backend(*, setting: str, **kwargs: Any) -> None:
    global _redis_configured
    if setting == "CACHES":
        _redis_configured = None


@functools.cache
def _is_redis_backend(path: str) -> bool:
    return issubclass(import_string(path), RedisCache)


class LoopRedis:
    """The event loop's own Redis connection (REDIS_URL, `config.redis_wire`: pipelined, hiredis)
    and the cache backend whose key function and decoder loop-side readers use, made once per
    loop (tests run one loop per test): `caches["default"]` is a new backend in every task's
    context, and its client was built anew for every read (3.4% of a server process's samples at
    600 msgs/s). Shared by the rights-version reader and the websocket sends' token take."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: WireClient | None = None
        self._backend: Any = None

    def get(self) -> tuple[WireClient, Any]:
        """(client, cache backend) of the running loop."""
        loop = asyncio.get_running_loop()
        if self._client is None:  # one client: it connects again itself on a new loop
            self._client = WireClient(WireAddress.from_url(settings.REDIS_URL))
        if self._loop is not loop:
            self._loop, self._backend = loop, caches["default"]
        return self._client, self._backend


loop_redis = LoopRedis()
