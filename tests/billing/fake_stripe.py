"""A small local Stripe: the few endpoints Parley uses, spoken well enough for the real `stripe`
SDK, with every request recorded and optional failures (500s, 429s, timeouts) injected.

Like Stripe, it refuses a second meter event with an identifier it has already accepted.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    outcome: str = "ok"


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe form encoding (`a[b][0][c]=v`) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


@dataclass
class FakeStripe:
    failure_rate: float = 0.0
    fail_paths: tuple[str, ...] = ("/v1/",)
    delay_seconds: float = 1.5
    seed: int = 7
    requests: list[Request] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    refuse_cancels: bool = False  # answer cancellations with 400 (past Stripe's 24-hour window)
    idempotency: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._random = random.Random(self.seed)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def calls(self, method: str, path_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # --- failure injection -------------------------------------------------------------------

    def pick_failure(self, path: str) -> str | None:
        if not self.failure_rate or not any(path.startswith(p) for p in self.fail_paths):
            return None
        with self._lock:
            if self._random.random() >= self.failure_rate:
                return None
            return self._random.choice(["500", "429", "timeout_before", "timeout_after"])

    # --- the API -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self._handle(method, path, params)

    def _handle(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = int(time.time())
        if method == "POST" and path == "/v1/customers":
            cid = self.new_id("cus")
            customer = {"id": cid, "object": "customer", "created": now, **params}
            self.customers[cid] = customer
            return 200, customer
        if method == "POST" and path == "/v1/billing/meter_events":
            identifier = params.get("identifier") or self.new_id("mev")
            if identifier in self.meter_events:
                return 400, _error(f"An event already exists with identifier {identifier}.")
            payload = params.get("payload") or {}
            if payload.get("stripe_customer_id") not in self.customers:
                return 400, _error(f"No such customer: '{payload.get('stripe_customer_id')}'", code="resource_missing")
            if not any(m["event_name"] == params.get("event_name") for m in self.meters.values()):
                return 400, _error(f"No active meter was found for event name {params.get('event_name')}.")
            event = {
                "object": "billing.meter_event",
                "created": now,
                "livemode": False,
                "event_name": params["event_name"],
                "identifier": identifier,
                "payload": payload,
                "timestamp": int(params.get("timestamp") or now),
            }
            self.meter_events[identifier] = event
            return 200, event
        if method == "POST" and path == "/v1/billing/meter_event_adjustments":
            identifier = (params.get("cancel") or {}).get("identifier", "")
            if self.refuse_cancels:
                return 400, _error("Meter events can only be cancelled within 24 hours of their creation.")
            self.cancelled.add(identifier)
            return 200, {"object": "billing.meter_event_adjustment", "status": "pending", "type": "cancel", **params}
        if method == "GET" and path == "/v1/billing/meters":
            return 200, _list(list(self.meters.values()), path)
        if method == "POST" and path == "/v1/billing/meters":
            if any(m["event_name"] == params["event_name"] for m in self.meters.values()):
                return 400, _error("A meter with this event_name already exists.")
            mid = self.new_id("mtr")
            meter = {"id": mid, "object": "billing.meter", "status": "active", **params}
            self.meters[mid] = meter
            return 200, meter
        match = re.fullmatch(r"/v1/billing/meters/([^/]+)/event_summaries", path)
        if method == "GET" and match:
            meter = self.meters.get(match.group(1))
            if meter is None:
                return 404, _error("No such meter", code="resource_missing")
            start, end = int(params["start_time"]), int(params["end_time"])
            total = sum(
                float(e["payload"].get("value", 0))
                for ident, e in self.meter_events.items()
                if e["event_name"] == meter["event_name"]
                and e["payload"].get("stripe_customer_id") == params["customer"]
                and start <= e["timestamp"] < end
                and ident not in self.cancelled
            )
            summary = {
                "id": self.new_id("mtrsum"),
                "object": "billing.meter_event_summary",
                "aggregated_value": total,
                "customer": params["customer"],
                "meter": meter["id"],
                "start_time": start,
                "end_time": end,
            }
            return 200, _list([summary], path)
        match = re.fullmatch(r"/v1/products/([^/]+)", path)
        if method == "GET" and match:
            product = self.products.get(match.group(1))
            if product is None:
                return 404, _error(f"No such product: '{match.group(1)}'", code="resource_missing")
            return 200, product
        if method == "POST" and path == "/v1/products":
            pid = params.get("id") or self.new_id("prod")
            product = {"object": "product", "active": True, **params, "id": pid}
            self.products[pid] = product
            return 200, product
        if method == "GET" and path == "/v1/prices":
            keys = params.get("lookup_keys") or []
            found = [p for p in self.prices.values() if p.get("lookup_key") in keys and p.get("active", True)]
            return 200, _list(found, path)
        if method == "POST" and path == "/v1/prices":
            pid = self.new_id("price")
            price = {"id": pid, "object": "price", "active": True, **params}
            self.prices[pid] = price
            return 200, price
        if method == "POST" and path == "/v1/checkout/sessions":
            sid = self.new_id("cs")
            return 200, {"id": sid, "object": "checkout.session", "url": f"https://checkout.example/{sid}", **params}
        if method == "POST" and path == "/v1/billing_portal/sessions":
            sid = self.new_id("bps")
            return 200, {
                "id": sid,
                "object": "billing_portal.session",
                "url": f"https://portal.example/{sid}",
                **params,
            }
        return 404, _error(f"Unrecognized request URL ({method}: {path}).")


def _error(message: str, *, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    return {"error": error}


def _list(items: list[dict[str, Any]], url: str) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": False, "url": url}


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = _unflatten(parse_qsl(split.query if method == "GET" else body, keep_blank_values=True))
            request = Request(method, split.path, params, {k.lower(): v for k, v in self.headers.items()})
            fake.requests.append(request)

            failure = fake.pick_failure(split.path)
            key = self.headers.get("Idempotency-Key") if method == "POST" else None
            if failure == "500":
                request.outcome = "500"
                return self._reply(500, {"error": {"type": "api_error", "message": "Something went wrong."}})
            if failure == "429":
                request.outcome = "429"
                return self._reply(
                    429,
                    {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests."}},
                )
            if failure == "timeout_before":
                request.outcome = "timeout_before"
                time.sleep(fake.delay_seconds)
                return self._close()
            if key and key in fake.idempotency:
                status, answer = fake.idempotency[key]
            else:
                status, answer = fake.handle(method, split.path, params)
                if key and status < 500:
                    fake.idempotency[key] = (status, answer)
            request.outcome = f"{status}" if failure is None else f"{status} then timeout"
            if failure == "timeout_after":
                # Stripe did the work; the answer is lost on the way back.
                time.sleep(fake.delay_seconds)
                return self._close()
            self._reply(status, answer)

        def _reply(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{time.monotonic_ns()}")
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass

        def _close(self) -> None:
            self.close_connection = True

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler


@contextmanager
def running(fake: FakeStripe) -> Iterator[FakeStripe]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
