"""Counting the client's waits on the database socket, for the tests that bound them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg


@contextlib.contextmanager
def socket_waits() -> Iterator[list[int]]:
    """Count the times the client waited on the database socket in this thread's connections:
    psycopg's generators yield to `Connection.wait`, which polls the socket with the GIL
    released; on a busy process each such wait is also a wait for the GIL afterwards, round
    trip or not (issue 9)."""
    count = [0]
    wait = psycopg.Connection.wait

    def counting_wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            try:
                ready = None
                while True:
                    state = gen.send(ready)
                    count[0] += 1
                    ready = yield state
            except StopIteration as stop:
                return stop.value

        return wait(self, counted(), *args, **kwargs)

    psycopg.Connection.wait = counting_wait  # type: ignore[method-assign]
    try:
        yield count
    finally:
        psycopg.Connection.wait = wait  # type: ignore[method-assign]
