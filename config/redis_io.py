"""Redis commands written from the event loop without holding the GIL through the system call.

redis-py's asyncio connection writes a command with `StreamWriter.writelines`; on uvloop the
transport's `write(2)` runs with the GIL held. A Redis server on the same machine is woken by
that write and, on a busy machine, the scheduler often runs it in the writing thread's place:
the thread is then off the CPU holding the GIL, and no other thread of its process (the
database threads writing send groups) can run Python until it gets a core back. Under the
inbox load (issue 9, 700 msgs/s) this was the event loop's largest single spot among the
samples of the thread holding the GIL (`StreamWriter.writelines`, 17% of the loop's), the same
mechanism as the libpq flush of config.sql.flush_releasing_gil.

`GilFreeWriteConnection` sends a command with `os.write` on the connection's socket (which
releases the GIL for the call) when nothing is waiting in the transport's own buffer, and
hands whatever the socket did not take to the transport, after which the transport writes as
before: the bytes reach the socket in order either way. Plain TCP connections only: a TLS
connection's bytes must go through its transport (`connection_class_for`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError


class GilFreeWriteConnection(Connection):
    """redis-py's TCP connection whose writes release the GIL for the system call."""

    _fd: int = -1

    async def _connect(self) -> None:
        await super()._connect()
        writer: Any = self._writer
        sock = writer.transport.get_extra_info("socket") if writer is not None else None
        self._fd = sock.fileno() if sock is not None else -1

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        writer: Any = self._writer
        if writer is None or writer.transport.is_closing():
            raise RedisConnectionError("Connection closed by the server before write")
        transport = writer.transport
        if self._fd < 0 or transport.get_write_buffer_size():
            # Bytes already queued in the transport go first: write behind them.
            await super()._send_packed_command(command)
            return
        data = b"".join(command)
        try:
            sent = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(data):
            transport.write(memoryview(data)[sent:])
            await writer.drain()


def connection_class_for(url: str) -> dict[str, Any]:
    """Keyword arguments for redis-py's `from_url` / `ConnectionPool`: the GIL-free class for a
    plain `redis://` URL; nothing for TLS (`rediss://`) or a Unix socket, which keep theirs."""
    return {"connection_class": GilFreeWriteConnection} if urlsplit(url).scheme == "redis" else {}
