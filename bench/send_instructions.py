"""A send's CPU as instructions, counted by valgrind's callgrind: the same figure for the same
code however busy the machine is, so a change of a few percent shows in one run where
wall-clock or CPU-time figures of a shared 2-core machine drift by tens of percent.

Run: .venv/bin/python bench/send_instructions.py [--sizes 1,20] [--groups 50] [--through writer,socket]
     .venv/bin/python bench/send_instructions.py --root /tmp/old --root .   # another checkout vs this one
     .venv/bin/python bench/send_instructions.py --sizes 10 --replies 1   # a tenth of each group agents' replies

Two paths (`--through`): `writer`, the send writer alone (below); `socket`, the whole server side
of a customer's send — `--size` customers' chat websockets (in process, on queues instead of a
server's sockets: the same for every checkout) each send one
message per group at once and wait for its answer: the frame's checks, the rights and the send
tokens read from Redis, the group commit, the writer, the publish and the answer frame.

For each checkout (`--root`, default this one) and each group size, a child process runs under
`valgrind --tool=callgrind --instr-atstart=no`: it makes a throwaway database with one business
and a conversation per customer, writes a few warm-up groups, then counts only `--groups` groups
of customer sends into existing conversations (`do_send_messages`, as a websocket's group commit
calls it, publishing through the configured channel layer from the process's own loop thread,
as a job worker does; the server publishes from its event loop) by turning callgrind's
instrumentation on around them (`callgrind_control -i on|off`). Prints instructions per group and
per message, and each checkout's ratio to the first. A group of one send is the writer at low
rates (its fixed cost per group); twenty, at 1,000 msgs/s. `--replies N` (the writer path): N
sends of each group are an agent's replies (as a websocket sends them: the seat checked by the
writer) into conversations whose customers wrote in the group before, inside a billable
conversation their first reply opened in the warm-up — the inbox load's mix has one reply to ten
customer messages. Production settings (DEBUG off).
Without valgrind on the machine it says so. `--child --no-count` runs one child without valgrind
(the smoke test in tests/bench).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARM_GROUPS = 20
CUSTOMERS = 200
# Sends per customer in a socket run: within a customer's burst (messaging.send_limits and the
# socket's own bucket: 20), so nothing is refused for its rate.
SEND_PER_CUSTOMER = 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,20", help="comma-separated sends per group")
    parser.add_argument("--groups", type=int, default=50, help="groups counted per size")
    parser.add_argument("--root", action="append", help="a checkout to measure (repeatable; default this one)")
    parser.add_argument("--through", default="writer", help="comma-separated paths: writer, socket")
    parser.add_argument("--replies", type=int, default=0, help="agents' replies in each group (writer path)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--no-count", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.groups < 1:
        parser.error("--groups must be at least 1")
    paths = [path.strip() for path in args.through.split(",") if path.strip()]
    if not paths or not set(paths) <= {"writer", "socket"}:
        parser.error("--through takes writer and/or socket")
    if args.child:
        child(args.size, args.groups, count=not args.no_count, through=paths[0], replies=args.replies)
        return
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    if not sizes or min(sizes) < 1 or max(sizes) > CUSTOMERS:
        parser.error(f"--sizes must be between 1 and {CUSTOMERS}")
    if args.replies < 0 or 2 * args.replies > min(sizes) or (args.replies and paths != ["writer"]):
        parser.error("--replies: at most half the smallest group's size, on the writer path only")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind): callgrind counts the instructions")
    roots = [Path(root).resolve() for root in (args.root or [str(ROOT)])]
    results: dict[tuple[str, Path, int], int] = {}
    for path in paths:
        for size in sizes:
            for root in roots:
                results[path, root, size] = counted(root, size, args.groups, path, args.replies)
                per_group = results[path, root, size] / args.groups
                ratio = results[path, root, size] / results[path, roots[0], size]
                print(
                    f"{root}: through the {path}, groups of {size}{f' ({args.replies} replies)' if args.replies else ''}: "
                    f"{per_group / 1e6:.2f} M instructions per group, "
                    f"{per_group / size / 1e6:.3f} M per message ({ratio:.3f}x the first)",
                    flush=True,
                )


def counted(root: Path, size: int, groups: int, through: str, replies: int = 0) -> int:
    """Instructions of `groups` groups of `size`, in a child under callgrind in `root`."""
    python = root / ".venv" / "bin" / "python"
    script = root / "bench" / "send_instructions.py"
    if not script.exists():  # an older checkout: this script, run from there
        script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={scratch}/callgrind.out",
            str(python if python.exists() else sys.executable),
            str(script),
            "--child",
            "--size",
            str(size),
            "--groups",
            str(groups),
            "--through",
            through,
            *(["--replies", str(replies)] if replies else []),
        ]
        done = subprocess.run(
            command, cwd=root, capture_output=True, text=True, env={**os.environ, "BENCH_ROOT": str(root)}
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the child in {root} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return int(found.group(1))


def child(size: int, groups: int, *, count: bool, through: str, replies: int = 0) -> None:
    root = Path(os.environ.get("BENCH_ROOT", ROOT))
    sys.path.insert(0, str(root))
    os.chdir(root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "0"  # measured as production runs
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
    # This run's own channel names in a shared Redis.
    os.environ["PARLEY_CHANNEL_PREFIX"] = f"bench{secrets.token_hex(3)}"
    from bench.throwaway_db import throwaway_database

    with throwaway_database():
        write_groups(size, groups, count=count, through=through, replies=replies)


def write_groups(size: int, groups: int, *, count: bool, through: str, replies: int = 0) -> None:
    from django_tenants.utils import schema_context

    business, customers = seeded()
    with schema_context(business.schema_name):
        if through == "socket":
            turns = -(-(WARM_GROUPS + groups) // SEND_PER_CUSTOMER)
            if size * turns > CUSTOMERS:
                raise SystemExit(f"at most {CUSTOMERS} customers: fewer groups or smaller ones")
            written = through_sockets(business, customers[: size * turns], size, groups, count=count)
        else:
            written = through_writer(business, customers, size, groups, count=count, replies=replies)
    print(f"{written} messages written in {groups} groups of {size}")
    if written != groups * size:
        raise SystemExit(f"only {written} of {groups * size} sends were answered as written")


def seeded() -> tuple[Any, list[Any]]:
    """One business and CUSTOMERS customers, each with a conversation (a template send)."""
    from django_tenants.utils import schema_context

    from bench.seeding import business_with_customers, flight_notice
    from messaging.sending import do_send_messages

    business, customers = business_with_customers(
        email="send-instructions@example.com", name="Send Instructions", slug="send-instructions", count=CUSTOMERS
    )
    with schema_context(business.schema_name):
        for start in range(0, CUSTOMERS, 20):
            do_send_messages(business=business, requests=[flight_notice(c) for c in customers[start : start + 20]])
    return business, customers


def through_writer(
    business: Any, customers: list[Any], size: int, groups: int, *, count: bool, replies: int = 0
) -> int:
    """The writer alone on groups of `size` sends, `replies` of them agents' replies, the others
    customers'; returns the sends written."""
    import gc

    from accounts.models import Membership
    from messaging.models import Conversation
    from messaging.sending import SendRequest, check_agent_send, check_customer_send, do_send_messages

    agent = Membership.objects.get(business_id=business.pk, role=Membership.Role.OWNER).user
    conversation_of = dict(Conversation.objects.values_list("contact__customer_id", "pk"))

    def group(number: int) -> list[SendRequest]:
        chunk = [customers[(number * size + k) % CUSTOMERS] for k in range(size - replies)]
        # Into the conversations of the group before's first customers: their window is open.
        answered = [customers[((number - 1) * size + k) % CUSTOMERS] for k in range(replies)]
        return [
            *(
                check_customer_send(customer=customer, body=f"Danke {number}", client_msg_id=f"c{number}-{k}")
                for k, customer in enumerate(chunk)
            ),
            *(
                check_agent_send(
                    business=business,
                    user=agent,
                    conversation_id=conversation_of[customer.pk],
                    body=f"Gern {number}",
                    client_msg_id=f"a{number}-{k}",
                    defer_membership=True,
                )
                for k, customer in enumerate(answered)
            ),
        ]

    for number in range(WARM_GROUPS):
        do_send_messages(business=business, requests=group(number))
    batches = [group(number) for number in range(WARM_GROUPS, WARM_GROUPS + groups)]
    # As the server does after start-up (config.asgi): what lives for the run is not traced.
    gc.collect()
    gc.freeze()
    instrumentation("on", count)
    written = 0
    for requests in batches:
        outcomes = do_send_messages(business=business, requests=requests)
        written += sum(1 for outcome in outcomes if not isinstance(outcome, Exception))
    instrumentation("off", count)
    return written


def through_sockets(business: Any, customers: list[Any], size: int, groups: int, *, count: bool) -> int:
    """`size` customers, each on their chat socket, send one message each per group, all at once,
    and wait for their answers before the next group; the groups take turns among `customers`
    so that none sends past a customer's limit (SEND_PER_CUSTOMER, within its burst). Returns
    the sends answered as written."""
    import asyncio
    import gc

    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore

    from config.routing import websocket_application
    from customers.session import SESSION_KEY

    sessions = []
    for customer in customers:
        store = SessionStore()
        store[SESSION_KEY] = customer.pk
        store.save()
        sessions.append(store.session_key)
    host = business.host

    async def run() -> int:
        sockets = []
        for session in sessions:
            headers = [
                (b"host", host.encode()),
                (b"origin", f"http://{host}".encode()),
                (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()),
            ]
            socket = LeanSocket(websocket_application, "/ws/chat/", headers)
            if not await socket.connect():
                raise SystemExit("a customer's chat socket was refused")
            sockets.append(socket)

        async def one_group(number: int) -> int:
            turn = number % (len(sockets) // size)
            senders = sockets[turn * size : (turn + 1) * size]
            ids = [f"s{number}-{k}" for k in range(size)]
            for socket, client_msg_id in zip(senders, ids, strict=True):
                socket.send_json({"type": "send", "body": f"Danke {number}", "client_msg_id": client_msg_id})
            answers = await asyncio.gather(
                *(answer(socket, client_msg_id) for socket, client_msg_id in zip(senders, ids, strict=True))
            )
            return sum(answers)

        for number in range(WARM_GROUPS):
            await one_group(number)
        gc.collect()
        gc.freeze()
        instrumentation("on", count)
        written = 0
        for number in range(WARM_GROUPS, WARM_GROUPS + groups):
            written += await one_group(number)
        instrumentation("off", count)
        for socket in sockets:
            await socket.close()
        return written

    return asyncio.run(run())


class LeanSocket:
    """A websocket client of the ASGI application in this process, on two queues: Channels'
    WebsocketCommunicator spent as much as the server side on itself (a timeout and mock
    patches per frame received), which would have been counted with the server's work."""

    def __init__(self, application: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        import asyncio

        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers, "subprotocols": []}
        self.task = asyncio.ensure_future(application(scope, self.incoming.get, self.outgoing.put))

    async def connect(self) -> bool:
        self.incoming.put_nowait({"type": "websocket.connect"})
        return (await self.outgoing.get())["type"] == "websocket.accept"

    def send_json(self, payload: dict[str, Any]) -> None:
        import json

        self.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(payload)})

    async def receive_json(self) -> dict[str, Any]:
        import asyncio
        import json

        message = await asyncio.wait_for(self.outgoing.get(), timeout=120)  # ~50x slower under valgrind
        if message["type"] != "websocket.send":
            raise SystemExit(f"the socket ended: {message}")
        frame: dict[str, Any] = json.loads(message["text"])
        return frame

    async def close(self) -> None:
        import asyncio

        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, timeout=120)


async def answer(socket: LeanSocket, client_msg_id: str) -> int:
    """1 when the send was answered as written (`message.accepted` or its own `message.created`),
    0 when refused; other frames are skipped."""
    while True:
        frame = await socket.receive_json()
        if frame.get("type") == "message.accepted" and frame.get("client_msg_id") == client_msg_id:
            return 1
        message = frame.get("message") if frame.get("type") == "message.created" else None
        if isinstance(message, dict) and message.get("client_msg_id") == client_msg_id:
            return 1
        if frame.get("type") == "error" and frame.get("client_msg_id") == client_msg_id:
            print(f"refused: {frame}", flush=True)
            return 0


def instrumentation(state: str, count: bool) -> None:
    if count:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)


if __name__ == "__main__":
    main()
