"""tenancy.asgi.SharedBusinesses: the sockets of one business share one Business instance
(issue 9), without ever handing one business's instance to another's socket, and without
serving a stale one (every connect still reads the business)."""

from __future__ import annotations

import gc

from tenancy.asgi import SharedBusinesses
from tenancy.models import Business


def _business(pk: int, schema: str, name: str = "Acme") -> Business:
    return Business(pk=pk, schema_name=schema, name=name, slug=schema)


def test_the_same_business_read_twice_is_shared() -> None:
    shared = SharedBusinesses()
    first = shared.share(_business(1, "b_acme"))
    again = shared.share(_business(1, "b_acme"))
    assert again is first


def test_businesses_a_and_b_never_share() -> None:
    shared = SharedBusinesses()
    a = shared.share(_business(1, "b_alpha", "Alpha"))
    b = shared.share(_business(2, "b_beta", "Beta"))
    assert a is not b
    assert shared.share(_business(1, "b_alpha", "Alpha")) is a
    assert shared.share(_business(2, "b_beta", "Beta")) is b
    # Same primary key but any field different (a renamed schema, a suspension, a new name):
    # the instance just read wins and becomes the shared one.
    renamed = _business(1, "b_alpha2", "Alpha")
    assert shared.share(renamed) is renamed
    suspended = _business(1, "b_alpha2", "Alpha")
    suspended.status = Business.Status.SUSPENDED
    assert shared.share(suspended) is suspended
    assert shared.share(_business(1, "b_alpha2", "Alpha")) is not suspended


def test_nothing_is_kept_once_no_socket_holds_the_business() -> None:
    shared = SharedBusinesses()
    business = shared.share(_business(1, "b_acme"))
    assert len(shared.by_pk) == 1
    del business
    gc.collect()
    assert len(shared.by_pk) == 0
    assert shared.share(None) is None
