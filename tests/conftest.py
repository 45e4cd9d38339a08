"""Shared test fixtures.

Two businesses (`business_a`, `business_b`) and their people are created once per test
session, committed, in the test database; tests then run inside a rolled-back transaction
(`db`) or, when other threads or processes must see their writes, against committed data
(`live_db`) with unique names. Never use `transactional_db`: its flush would wipe the
session's businesses while their schemas stay behind.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django_tenants.utils import tenant_context

from accounts.models import Membership, User
from tenancy.models import Business

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple-42"


@dataclass
class World:
    business_a: Business
    business_b: Business
    owner_a: User
    agent_a: User
    owner_b: User
    agent_b: User
    staff: User


def _user(email: str, *, staff: bool = False) -> User:
    from allauth.account.models import EmailAddress

    user, created = User.objects.get_or_create(email=email, defaults={"is_staff": staff, "is_superuser": staff})
    if created:
        user.set_password(PASSWORD)
        user.save()
    # Logging in needs a confirmed address (mandatory email verification).
    EmailAddress.objects.get_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    return user


STAFF_TOTP_SECRET = "PARLEYTESTSTAFFADMIN2345"


def _two_factor(user: User) -> None:
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP

    if not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(user, STAFF_TOTP_SECRET)


def _business(slug: str, owner: User) -> Business:
    from tenancy.services import business_create

    existing = Business.objects.filter(slug=slug).first()
    return existing or business_create(owner=owner, name=f"{slug.title()} Ltd", slug=slug)


TODAY_ENV = "PARLEY_TEST_TODAY"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--today",
        default=os.environ.get(TODAY_ENV, ""),
        metavar="YYYY-MM-DD",
        help=(
            "Run the whole session as if today were this date, at the real time of day "
            f"(also ${TODAY_ENV}). The test process travels with time-machine; PostgreSQL's "
            "now()/CURRENT_DATE and separate processes (live servers, browsers, subprocess "
            "commands) keep the real clock, so tests that read dates there follow the real date. "
            "Tests marked real_clock (they compare this process's clock with PostgreSQL's or another "
            "process's, e.g. a job retry scheduled in Python and picked up by now() in SQL) run at the real date and "
            "time instead; the report header lists them."
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Travel the test process to --today / $PARLEY_TEST_TODAY for the whole session, so
    date-dependent tests can be proved on the 1st, the 15th and the last day of a month."""
    raw = config.getoption("--today")
    if not raw:
        return
    import datetime as dt

    import time_machine

    try:
        day = dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"--today / ${TODAY_ENV} must be YYYY-MM-DD, not {raw!r}") from exc
    now = dt.datetime.now(dt.UTC)
    traveller = time_machine.travel(dt.datetime.combine(day, now.timetz()), tick=True)
    traveller.start()
    config.add_cleanup(traveller.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    raw = config.getoption("--today")
    return f"today travelled to {raw} (PostgreSQL and subprocesses keep the real clock)" if raw else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--today"):
        return
    real = [item.nodeid for item in items if item.get_closest_marker("real_clock")]
    if real:
        config.issue_config_time_warning(
            pytest.PytestWarning("--today: these tests run at the real date (real_clock): " + ", ".join(real)),
            stacklevel=2,
        )


@pytest.fixture(autouse=True)
def _real_clock_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under --today, a real_clock test travels back to the real date and time for its run:
    it compares this process's clock with PostgreSQL's now() or another process's, which cannot travel."""
    if not (request.node.get_closest_marker("real_clock") and request.config.getoption("--today")):
        yield
        return
    import time_machine

    with time_machine.travel(time_machine.escape_hatch.datetime.datetime.now(tz=None).astimezone(), tick=True):
        yield


@pytest.fixture(scope="session")
def django_db_setup(
    request: Any,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_keepdb: bool,
    django_db_createdb: bool,
    django_db_modify_db_settings: None,
) -> Iterator[World]:
    from django.test.utils import setup_databases

    with django_db_blocker.unblock():
        # Always the test database. pytest-django's own fixture sets it up only when a collected
        # test asks for `db`: a run of `live_db` tests alone would use DATABASE_URL's database.
        setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            aliases={"default"},
            keepdb=django_db_keepdb and not django_db_createdb,
        )
        call_command("parley_setup", verbosity=0)
        owner_a, agent_a = _user("owner@alpha.test"), _user("agent@alpha.test")
        owner_b, agent_b = _user("owner@beta.test"), _user("agent@beta.test")
        staff = _user("staff@parley.test", staff=True)
        _two_factor(staff)  # the admin opens only with it (accounts.admin_access)
        business_a = _business("alpha", owner_a)
        business_b = _business("beta", owner_b)
        Membership.objects.get_or_create(user=agent_a, business=business_a, defaults={"role": "agent"})
        Membership.objects.get_or_create(user=agent_b, business=business_b, defaults={"role": "agent"})
        connection.set_schema_to_public()
    yield World(business_a, business_b, owner_a, agent_a, owner_b, agent_b, staff)


@pytest.fixture(scope="session", autouse=True)
def _private_files_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Attachments go to a folder of this test session, in this process and in the servers it
    starts (they inherit the environment), never into the checkout's .media-private/."""
    from django.test.utils import override_settings

    root = tmp_path_factory.mktemp("attachments")
    os.environ["PARLEY_ATTACHMENTS_ROOT"] = str(root)
    storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
    with override_settings(STORAGES={**settings.STORAGES, "attachments": storage}):
        yield root


@pytest.fixture(autouse=True)
def _public_schema_between_tests() -> Iterator[None]:
    """A request through the test client leaves the connection in that business's schema
    (as django-tenants does per request); each test starts and ends on public."""
    connection.set_schema_to_public()
    yield
    connection.set_schema_to_public()


_WORLD_USERS = ("owner_a", "agent_a", "owner_b", "agent_b", "staff")


def _as_stored(world: World) -> World:
    """The session's world with its users as the database holds them now: a test that renames a
    user (in memory, or in a transaction rolled back after it) must not hand that name to the
    tests after it."""
    stored = User.objects.in_bulk([getattr(world, name).pk for name in _WORLD_USERS])
    return replace(world, **{name: stored[getattr(world, name).pk] for name in _WORLD_USERS})


@pytest.fixture
def world(django_db_setup: World, db: None) -> World:
    return _as_stored(django_db_setup)


@pytest.fixture
def live_db(django_db_setup: World, django_db_blocker: Any) -> Iterator[World]:
    """Committed database access, for tests whose writes other threads or processes must see."""
    with django_db_blocker.unblock():
        yield _as_stored(django_db_setup)
        connection.set_schema_to_public()


@pytest.fixture
def fixed_code(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every code sent during the test is this one (codes are random otherwise)."""
    code = "493817"
    monkeypatch.setattr("verification.otp.generate_code", lambda: code)
    return code


def fresh_mobile() -> str:
    """A valid German mobile number no other test (or earlier run) has used."""
    return "+49151" + "".join(secrets.choice("0123456789") for _ in range(8))


class Concurrently(Protocol):
    def __call__[T](self, threads: int, action: Callable[[], T]) -> list[T]: ...


def run_concurrently[T](threads: int, action: Callable[[], T]) -> list[T]:
    """Run `action` in that many threads released together by a barrier, each on its own
    database connection (as several server processes would be), and return their results.
    The first error a thread raised is raised here, once every thread has finished."""
    barrier = threading.Barrier(threads)
    lock = threading.Lock()
    results: list[T] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            result = action()
            with lock:
                results.append(result)
        except BaseException as error:  # raised in the test's thread below
            with lock:
                errors.append(error)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def concurrently(live_db: World) -> Concurrently:
    """`run_concurrently` for a test; the threads have their own connections, so they see only
    committed data (hence `live_db`)."""
    return run_concurrently


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def host_client(host: str, user: User | None = None) -> Client:
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client


def public_client(user: User | None = None) -> Client:
    return host_client(settings.PARLEY_DOMAIN, user)


def business_client(business: Business, user: User | None = None) -> Client:
    return host_client(business.host, user)


@contextmanager
def in_business(business: Business) -> Iterator[None]:
    with tenant_context(business):
        yield
    connection.set_schema_to_public()


# --- a real server process, for browsers and cross-process tests ------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_url() -> str:
    db = settings.DATABASES["default"]
    host = db["HOST"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{db['NAME']}?host={host}"
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class LiveServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def public_url(self, path: str = "/") -> str:
        return self.url(settings.PARLEY_DOMAIN, path)

    def business_url(self, business: Business, path: str = "/") -> str:
        return self.url(business.host, path)


def start_server(port: int, *, extra_env: dict[str, str] | None = None, name: str = "server") -> LiveServer:
    log_dir = ROOT / "test-artifacts"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    env = dict(os.environ, DATABASE_URL=test_database_url(), PARLEY_PORT=str(port), **(extra_env or {}))
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early; see {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return LiveServer(port, process, log_path)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start; see {log_path}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def live_server_process(django_db_setup: World) -> Iterator[LiveServer]:
    """One Daphne process serving the test database, shared by the session's browser tests.
    PARLEY_PORT is set for the server so the absolute URLs it renders point back at it."""
    server = start_server(free_port(), name="live")
    yield server
    stop_server(server)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# Module scope: Playwright keeps its event loop running while open, and async tests in later
# modules need the thread free of it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"Chromium not found at {executable}: install Debian's chromium (see .ci/run)")
    # Playwright's sync API keeps an event loop running in this thread, which makes Django
    # refuse ORM calls from the test body; the tests here are synchronous, so that is safe.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# What a failed browser test saw, printed with its failure: the live server's log since the test
# started, and the browser's console, page errors, failed or refused requests and websocket
# traffic. A browser test that fails only on another machine is read from these.
SERVER_LOG_AT = pytest.StashKey[dict[Path, int]]()
BROWSER_LOG = pytest.StashKey[deque[str]]()


def _watch_context(context: Any, lines: deque[str]) -> None:
    started = time.monotonic()

    def note(text: str) -> None:
        lines.append(f"{time.monotonic() - started:7.3f}s {text[:300]}")

    def watch_socket(ws: Any) -> None:
        note(f"websocket {ws.url}")
        ws.on("framesent", lambda payload: note(f"ws >> {payload}"))
        ws.on("framereceived", lambda payload: note(f"ws << {payload}"))
        ws.on("socketerror", lambda error: note(f"ws error {error}"))
        ws.on("close", lambda _ws: note("ws closed"))

    def refused(response: Any) -> None:
        if response.status >= 400:
            note(f"HTTP {response.status} {response.request.method} {response.url}")

    context.on("console", lambda message: note(f"console {message.type}: {message.text}"))
    context.on("weberror", lambda error: note(f"page error: {error.error}"))
    context.on("requestfailed", lambda request: note(f"request failed: {request.url} {request.failure}"))
    context.on("response", refused)
    context.on("page", lambda page: page.on("websocket", watch_socket))


@pytest.fixture(autouse=True)
def _diagnostics_of_browser_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    names = request.fixturenames
    if "live_server_process" in names:
        log = request.getfixturevalue("live_server_process").log_path
        request.node.stash[SERVER_LOG_AT] = {log: log.stat().st_size}
    if "browser" not in names:
        yield
        return
    browser = request.getfixturevalue("browser")
    lines: deque[str] = deque(maxlen=300)
    request.node.stash[BROWSER_LOG] = lines
    original = browser.new_context

    def new_context(*args: Any, **kwargs: Any) -> Any:
        context = original(*args, **kwargs)
        _watch_context(context, lines)
        return context

    browser.new_context = new_context
    try:
        yield
    finally:
        del browser.new_context


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when != "call" or not report.failed:
        return report
    for path, offset in item.stash.get(SERVER_LOG_AT, {}).items():
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        report.sections.append((f"live server log ({path.name}, last 6,000 characters)", text[-6000:] or "(empty)"))
    lines = item.stash.get(BROWSER_LOG, None)
    if lines is not None:
        report.sections.append(
            ("browser: console, errors, refused requests, websockets", "\n".join(lines) or "(nothing)")
        )
    return report


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def evaluate_on_public_page(browser: Any, server: LiveServer, script: str) -> Any:
    """Run `script` (a JS function, which may import the pages' ES modules) in a fresh tab of the
    public home page and return its result: for checks of static/parley's modules on their own."""
    page = browser.new_page()
    try:
        page.goto(server.public_url("/"), wait_until="load")
        return page.evaluate(script)
    finally:
        page.close()
