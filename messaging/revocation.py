"""Revoking websocket rights: seat removed, logout, customer sign-out, password change, business
suspended. Two mechanisms, so neither a lost signal nor a stale socket keeps access:

- a signal: after commit, a `rights.revoked` message to the group of every socket affected
  (`u.<user id>`, `c.<customer id>`, `t.<schema>.sockets`); each socket re-checks its rights on
  the spot and closes (4401 session ended, 4403 no longer allowed);
- a rights version per user, customer and business in the shared cache, bumped by the same
  revocation; a socket compares it on every frame it handles and re-checks fully when it moved,
  so a signal lost on the at-most-once layer costs at most until the next frame (the pages ping
  every 25 s). The reads are gathered per process on the event loop (`RightsVersionReader`: one
  MGET for every socket that asked since the previous one started, so each frame still reads a
  version at least as new as itself), never a database thread's round trip per frame.

A logged-out session is marked revoked in the cache before anyone re-checks: Django sends
`user_logged_out` before it flushes the session.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import import_module
from typing import Any

from allauth.account import signals as account_signals
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.signals import user_logged_out
from django.core.cache import cache
from django.db import transaction
from django.dispatch import receiver
from django.utils.crypto import constant_time_compare

from config.cache import loop_redis, redis_cache_configured
from config.websocket import CloseCode
from messaging.events import run_from_sync
from tenancy.signals import business_suspended

logger = logging.getLogger("parley.messaging")

LAYER_RIGHTS_REVOKED = "rights.revoked"


def user_group(user_id: int) -> str:
    return f"u.{int(user_id)}"


def customer_sockets_group(customer_id: int) -> str:
    return f"c.{int(customer_id)}"


def business_sockets_group(schema_name: str) -> str:
    return f"t.{schema_name}.sockets"


def _version_key(kind: str, pk: int) -> str:
    return f"parley:rights:{kind}:{int(pk)}"


def _revoked_session_key(kind: str, session_key: str) -> str:
    # Per kind: one browser session can hold both an agent's login and a customer's sign-in, and
    # ending one must not end the other.
    return f"parley:rights:session:{kind}:{session_key}"


def rights_keys(*, user_id: int | None = None, customer_id: int | None = None, business_id: int) -> list[str]:
    keys = [_version_key("b", business_id)]
    if user_id is not None:
        keys.append(_version_key("u", user_id))
    if customer_id is not None:
        keys.append(_version_key("c", customer_id))
    return keys


def rights_versions(keys: list[str]) -> dict[str, Any]:
    """The current versions (missing keys: never revoked). Synchronous: a database thread."""
    return cache.get_many(keys)


class RightsVersionReader:
    """Rights versions for the sockets of one process, read on its event loop: requests that
    arrive while a read is in flight are answered together by the next one (one MGET), which
    starts after they arrived, so no frame runs on a version older than itself."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: list[tuple[list[str], asyncio.Future[dict[str, Any]]]] = []
        self.task: asyncio.Task[None] | None = None
        self.full_keys: dict[str, str] = {}

    def _full_key(self, backend: Any, name: str) -> str:
        # Made once per key: the cache's key function (prefix, version, validation) is costly
        # at a few thousand frames a second.
        full = self.full_keys.get(name)
        if full is None:
            if len(self.full_keys) > 100_000:
                self.full_keys.clear()
            full = self.full_keys[name] = backend.make_and_validate_key(name)
        return full

    async def read(self, keys: list[str]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new loop (tests run one per test)
            self.loop, self.waiting, self.task = loop, [], None
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.waiting.append((keys, future))
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        client, backend = loop_redis.get()
        loads = backend._cache._serializer.loads
        while self.waiting:
            batch, self.waiting = self.waiting, []
            names = sorted({key for keys, _future in batch for key in keys})
            try:
                values = await client.send("MGET", *[self._full_key(backend, name) for name in names])
            except Exception as error:
                for _keys, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            # Decoded as the cache decodes them, so versions read here and with `rights_versions`
            # (a socket's admission, on a database thread) compare equal.
            found = {name: loads(value) for name, value in zip(names, values, strict=True) if value is not None}
            for keys, future in batch:
                if not future.done():
                    future.set_result({key: found[key] for key in keys if key in found})


_reader = RightsVersionReader()


def reads_on_loop() -> bool:
    """Whether versions can be read on the event loop (the Redis cache); else on a database
    thread with `rights_versions` (the database cache of a set-up without Redis). From the
    setting, not `caches["default"]`: that made a cache backend in every socket's context."""
    return redis_cache_configured()


async def rights_versions_live(keys: list[str]) -> dict[str, Any]:
    """The current versions, read on the event loop (see `RightsVersionReader`)."""
    return await _reader.read(keys)


def _bump(key: str) -> None:
    cache.add(key, 0, timeout=None)
    try:
        cache.incr(key)
    except ValueError:  # evicted in between: any change of value will do
        cache.set(key, 1, timeout=None)


def _revoke(*, version_key: str, group: str, session_key: str | None, kind: str = "") -> None:
    if session_key and kind:
        cache.set(_revoked_session_key(kind, session_key), True, timeout=settings.SESSION_COOKIE_AGE)

    def signal() -> None:
        _bump(version_key)
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            run_from_sync(layer.group_send(group, {"type": LAYER_RIGHTS_REVOKED, "session_key": session_key or ""}))
        except Exception:  # the version bump still closes the socket at its next frame
            logger.exception("revocation signal to %s failed", group)

    transaction.on_commit(signal)


def rights_revoke_user(*, user_id: int, session_key: str | None = None) -> None:
    """Every socket of this user re-checks (seat removed, password changed); `session_key`: that
    session ended (logout)."""
    _revoke(version_key=_version_key("u", user_id), group=user_group(user_id), session_key=session_key, kind="user")


def rights_revoke_customer(*, customer_id: int, session_key: str | None = None) -> None:
    _revoke(
        version_key=_version_key("c", customer_id),
        group=customer_sockets_group(customer_id),
        session_key=session_key,
        kind="customer",
    )


def rights_revoke_business(*, business_id: int, schema_name: str) -> None:
    """Every socket on the business's host re-checks (suspension)."""
    _revoke(version_key=_version_key("b", business_id), group=business_sockets_group(schema_name), session_key=None)


# --- the checks (synchronous: run on a database thread) ----------------------------------------


def _session_data(kind: str, session_key: str | None) -> dict[str, Any] | None:
    if not session_key or cache.get(_revoked_session_key(kind, session_key)):
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    return data if data else None


def _business_active(business_id: int) -> bool:
    from tenancy.models import Business

    return Business.objects.filter(pk=business_id, status=Business.Status.ACTIVE).exists()


def agent_refusal(*, business_id: int, user_id: int, session_key: str | None) -> CloseCode | None:
    """None while the agent may use the business's inbox; else the close code."""
    return _agent_check(business_id=business_id, user_id=user_id, session_key=session_key)[1]


def _agent_check(*, business_id: int, user_id: int, session_key: str | None) -> tuple[Any, CloseCode | None]:
    from accounts.models import Membership, User

    data = _session_data("user", session_key)
    if data is None or str(data.get(SESSION_KEY)) != str(user_id):
        return None, CloseCode.UNAUTHENTICATED
    user = User.objects.filter(pk=user_id, is_active=True).first()
    session_hash = data.get(HASH_SESSION_KEY)
    if user is None or not session_hash or not constant_time_compare(session_hash, user.get_session_auth_hash()):
        return None, CloseCode.UNAUTHENTICATED  # logged out, or the password changed in another session
    if not _business_active(business_id):
        return None, CloseCode.FORBIDDEN
    if not Membership.objects.filter(business_id=business_id, user_id=user_id).exists():
        return None, CloseCode.FORBIDDEN
    return user, None


def customer_refusal(*, business_id: int | None, customer_id: int, session_key: str | None) -> CloseCode | None:
    """None while the customer is still signed in (and the business, if any, active)."""
    return _customer_check(business_id=business_id, customer_id=customer_id, session_key=session_key)[1]


def _customer_check(
    *, business_id: int | None, customer_id: int, session_key: str | None
) -> tuple[Any, CloseCode | None]:
    from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
    from customers.session import customer_from_session

    data = _session_data("customer", session_key)
    if data is None or str(data.get(CUSTOMER_SESSION_KEY)) != str(customer_id):
        return None, CloseCode.UNAUTHENTICATED
    customer = customer_from_session(data)
    if customer is None:  # the account was deleted
        return None, CloseCode.UNAUTHENTICATED
    if business_id is not None and not _business_active(business_id):
        return None, CloseCode.FORBIDDEN
    return customer, None


def agent_admission(*, business_id: int, session_key: str | None) -> tuple[Any, CloseCode | None, dict[str, Any]]:
    """At connect, in one database-thread call: the session's user, whether they may use the
    business's inbox (None, or the close code) and the rights versions read *before* the check.
    The socket remembers those versions; its first frame (the resume, before anything is
    forwarded) re-reads them after it joined its revocation groups, so a revocation in between
    is never missed."""
    data = _session_data("user", session_key)
    user_id = data.get(SESSION_KEY) if data else None
    if user_id is None or not str(user_id).isdigit():
        return None, CloseCode.UNAUTHENTICATED, {}
    # Versions first: a revocation after this read bumps them, and the socket notices.
    versions = rights_versions(rights_keys(user_id=int(user_id), business_id=business_id))
    user, refusal = _agent_check(business_id=business_id, user_id=int(user_id), session_key=session_key)
    return user, refusal, versions


def customer_admission(*, business_id: int, session_key: str | None) -> tuple[Any, CloseCode | None, dict[str, Any]]:
    """As agent_admission, for a customer's chat socket: (customer, refusal, versions)."""
    from customers.session import customer_id_from_session

    data = _session_data("customer", session_key)
    customer_id = customer_id_from_session(data) if data else None
    if customer_id is None:
        return None, CloseCode.UNAUTHENTICATED, {}
    versions = rights_versions(rights_keys(customer_id=customer_id, business_id=business_id))
    customer, refusal = _customer_check(business_id=business_id, customer_id=customer_id, session_key=session_key)
    return customer, refusal, versions


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    session = getattr(request, "session", None)
    rights_revoke_user(user_id=user.pk, session_key=getattr(session, "session_key", None))


@receiver(account_signals.password_changed)
@receiver(account_signals.password_set)
@receiver(account_signals.password_reset)
def _password_changed(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Sessions signed with the old password's hash no longer hold; the one that changed it was
    # re-signed by allauth (update_session_auth_hash) and stays.
    rights_revoke_user(user_id=user.pk)


@receiver(business_suspended)
def _business_suspended(sender: Any, business: Any, **kwargs: Any) -> None:
    rights_revoke_business(business_id=business.pk, schema_name=business.schema_name)
