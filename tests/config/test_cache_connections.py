"""The Redis cache keeps one connection pool per process: under ASGI every websocket consumer
has a cache instance of its own (Django's `caches` is per async context), and with Django's
own backend each of them opened and kept its own Redis connection — 10,000 idle sockets held
~10,000 connections until Redis refused every new client on the machine."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import redis
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.test import override_settings

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")

CONTEXTS = 120  # consumers, each in an async context of its own


def _clients_named(name: str) -> int:
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as probe:
        return sum(1 for client in probe.client_list() if client.get("name") == name)


async def _touch_from_every_context(alias: str) -> None:
    async def consumer(n: int) -> None:
        # As a consumer's database-thread work does: the cache looked up inside the thread.
        await sync_to_async(lambda: caches[alias].get(f"probe:{n}"), thread_sensitive=False)()

    await asyncio.gather(*(asyncio.create_task(consumer(n)) for n in range(CONTEXTS)))


def _connections_after_touching(backend: str) -> int:
    name = f"parley-test-{uuid.uuid4().hex[:8]}"
    cache_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "probe": {"BACKEND": backend, "LOCATION": os.environ["REDIS_URL"], "OPTIONS": {"client_name": name}},
    }
    with override_settings(CACHES=cache_setting):
        asyncio.run(_touch_from_every_context("probe"))
        return _clients_named(name)


def test_every_context_shares_the_process_pool() -> None:
    assert 1 <= _connections_after_touching("config.cache.SharedPoolRedisCache") <= 8  # the executor's threads


def test_djangos_own_backend_would_open_one_per_context() -> None:
    """Why the shared pool exists (and that the test above really uses many contexts)."""
    assert _connections_after_touching("django.core.cache.backends.redis.RedisCache") > CONTEXTS // 2


def test_whether_the_cache_is_redis_follows_the_setting() -> None:
    """`redis_cache_configured` is kept between calls (asked for every websocket send) and
    forgotten when CACHES changes."""
    from config.cache import redis_cache_configured

    assert redis_cache_configured()
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
        assert not redis_cache_configured()
    assert redis_cache_configured()


def test_the_live_send_tokens_use_the_keys_of_the_sync_take() -> None:
    """The websocket path makes its bucket keys without the cache's validation: the same keys."""
    from messaging.send_limits import _key

    backend = caches["default"]
    key = _key("b_demo", "customer:42")
    assert backend.make_key(key) == backend.make_and_validate_key(key)
