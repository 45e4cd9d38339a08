"""How fast one author (a customer, an agent) may send into one business, whatever the number of
sockets or server processes they use: one token bucket per (business, author) in the shared
cache. On Redis it is one atomic Lua script (Redis's own clock, so processes on several machines
agree); on the database cache (no REDIS_URL) a fixed window counted with add/incr.

The key carries the schema (DESIGN: every cache key names its tenant)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.utils.translation import gettext as _
from redis.exceptions import NoScriptError

from config.cache import loop_redis, redis_cache_configured
from config.redis_wire import retrieve
from messaging.errors import MessagingError, MessagingErrorCode

# A burst of 20, then 2 a second: a person typing never notices; a script notices at once.
SEND_RATE = 2.0
SEND_BURST = 20

# One token from each key's bucket, in order (a key twice takes two): {allowed, wait} per key,
# flat. One call for a whole group of sends: a call per send cost each side a command to pack,
# parse and answer (issue 9).
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local answers = {}
for _, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = burst
    at = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local allowed = 0
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 1)
  answers[#answers + 1] = allowed
  answers[#answers + 1] = tostring(wait)
end
return answers
"""

_script: Any = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until the next send would be allowed (0 when allowed)


def _verdict(allowed: Any, wait: Any) -> Verdict:
    """The token bucket script's answer for one key (`allowed, wait`, as Redis returns them)."""
    return Verdict(bool(int(allowed)), 0.0 if int(allowed) else max(0.1, round(float(wait), 2)))


def _verdicts(answers: list[Any]) -> list[Verdict]:
    """The script's flat answer, a verdict per key in order."""
    return [_verdict(allowed, wait) for allowed, wait in zip(answers[::2], answers[1::2], strict=True)]


def rate_limited(retry_after: float) -> MessagingError:
    return MessagingError(
        MessagingErrorCode.RATE_LIMITED, _("You are sending too fast. Please wait a moment."), retry_after=retry_after
    )


def _key(schema_name: str, author_key: str, action: str = "send") -> str:
    return f"parley:{action}-limit:{schema_name}:{author_key}"


def send_take(
    *, schema_name: str, author_key: str, rate: float = SEND_RATE, burst: int = SEND_BURST, action: str = "send"
) -> Verdict:
    """Take one send from the author's bucket. Synchronous: call it on a database thread.
    `action` names another bucket of the same author (attachment uploads have their own)."""
    key = _key(schema_name, author_key, action)
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _redis_take(backend, key, rate, burst)
    return _window_take(backend, key, rate, burst)


def _redis_take(backend: Any, key: str, rate: float, burst: int) -> Verdict:
    global _script
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(full_key, write=True)
    if _script is None:
        _script = client.register_script(_TOKEN_BUCKET)
    (verdict,) = _verdicts(_script(keys=[full_key], args=[rate, burst], client=client))
    return verdict


def _window_take(cache: Any, key: str, rate: float, burst: int) -> Verdict:
    window = max(1, math.ceil(burst / rate))
    slot = int(time.time() // window)
    bucket = f"{key}:{slot}"
    cache.add(bucket, 0, timeout=window * 2)
    try:
        count = cache.incr(bucket)
    except ValueError:  # expired between add and incr
        cache.add(bucket, 1, timeout=window * 2)
        count = 1
    if count <= burst:
        return Verdict(True, 0.0)
    return Verdict(False, max(0.1, round((slot + 1) * window - time.time(), 2)))


def send_take_many(*, schema_name: str, author_keys: list[str]) -> list[Verdict]:
    """`send_take` for several sends at once (a group of websocket sends): on Redis one script
    call for all of them, in order (an author twice in the list takes two tokens)."""
    if not author_keys:
        return []
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return [send_take(schema_name=schema_name, author_key=key) for key in author_keys]
    global _script
    full_keys = [backend.make_and_validate_key(_key(schema_name, key)) for key in author_keys]
    client = backend._cache.get_client(full_keys[0], write=True)
    if _script is None:
        _script = client.register_script(_TOKEN_BUCKET)
    return _verdicts(_script(keys=full_keys, args=[SEND_RATE, SEND_BURST], client=client))


class LiveSendTokens:
    """`send_take_many` for a group of websocket sends, on the server's event loop: one EVALSHA
    for the group on the loop's pipelined Redis connection (`config.redis_wire`).
    Taken on a database thread, as before, it cost that thread two Redis round trips per group
    (redis-py's pipeline asks SCRIPT EXISTS before every execute), each a wait for the GIL on a
    busy process. The same buckets as `send_take` (same keys, same script)."""

    def __init__(self) -> None:
        self.sha: str | None = None  # the script's, once loaded (NOSCRIPT: loaded again)

    async def take_many(self, *, schema_name: str, author_keys: list[str]) -> list[Verdict] | None:
        """None without Redis (the database cache's window is taken on the database thread)."""
        if not redis_cache_configured():
            return None
        if not author_keys:
            return []
        client, backend = loop_redis.get()
        # The same keys as `send_take`'s, without the validation: it only warns about keys
        # memcached would refuse, a Python loop over every character of every key.
        full_keys = [backend.make_key(_key(schema_name, key)) for key in author_keys]
        for _attempt in range(2):
            if self.sha is None:
                self.sha = (await client.send("SCRIPT", "LOAD", _TOKEN_BUCKET)).decode()
            try:
                answers = await client.send("EVALSHA", self.sha, len(full_keys), *full_keys, SEND_RATE, SEND_BURST)
            except NoScriptError:  # Redis restarted or SCRIPT FLUSH: load it again, once
                self.sha = None
                continue
            return _verdicts(answers)
        raise NoScriptError("the send-limit script could not be loaded")


live_send_tokens = LiveSendTokens()


class PrefetchedTokens:
    """Send tokens asked for as websocket sends are queued (`ask`), not when their group is
    taken: every ask of one turn of the loop is taken together (`LiveSendTokens.take_many`, one
    per business), so the round trip runs while the sends wait for the group in flight, and a
    group starts writing without one (issue 9). A send refused or dropped after it was queued
    has spent its token (its author's bucket is a little emptier; nothing is written for it)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.asks: dict[str, list[tuple[str, asyncio.Future[Verdict]]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def ask(self, *, schema_name: str, author_key: str) -> asyncio.Future[Verdict] | None:
        """The author's verdict, soon; None without Redis (the database thread takes it then)."""
        if not redis_cache_configured():
            return None
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new loop (tests run one per test)
            self.loop, self.asks = loop, {}
        if not self.asks:
            loop.call_soon(self._take_asked)
        future: asyncio.Future[Verdict] = loop.create_future()
        # A send dropped before its group (its socket gone) never reads it: nor is its error logged.
        future.add_done_callback(retrieve)
        self.asks.setdefault(schema_name, []).append((author_key, future))
        return future

    def _take_asked(self) -> None:
        asks, self.asks = self.asks, {}
        for schema_name, asked in asks.items():
            task = asyncio.ensure_future(self._take(schema_name, asked))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _take(schema_name: str, asked: list[tuple[str, asyncio.Future[Verdict]]]) -> None:
        try:
            verdicts = await live_send_tokens.take_many(schema_name=schema_name, author_keys=[key for key, _ in asked])
            if verdicts is None:  # the cache changed under a running server (tests' settings)
                raise RuntimeError("send limits are not on Redis")
        except Exception as error:
            for _key, future in asked:
                if not future.done():
                    future.set_exception(error)
            return
        for (_key, future), verdict in zip(asked, verdicts, strict=True):
            if not future.done():
                future.set_result(verdict)


prefetched_tokens = PrefetchedTokens()
