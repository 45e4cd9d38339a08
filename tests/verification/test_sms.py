"""SMS backends: outbox, console, and Twilio's REST API spoken to a local HTTP server."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import World, public_client
from tests.verification.conftest import fresh_mobile, run_sms_jobs
from verification.models import PhoneChallenge, SmsMessage
from verification.otp import otp_send
from verification.sms import (
    ConsoleBackend,
    SmsPermanentError,
    SmsTemporaryError,
    TwilioBackend,
    get_backend,
    send_sms_now,
)


class FakeTwilio:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 201
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                fake.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "form": parse_qs(body)}
                )
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if fake.status < 400:
                    payload = {"sid": f"SM{len(fake.requests):032d}", "status": "queued"}
                else:
                    payload = {"code": 21211, "message": "The 'To' number is not a valid phone number."}
                self.wfile.write(json.dumps(payload).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
    fake.thread.start()
    settings.PARLEY_SMS_BACKEND = "twilio"
    settings.TWILIO_API_BASE = fake.url
    settings.TWILIO_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
    settings.TWILIO_AUTH_TOKEN = "secret-token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    yield fake
    fake.server.shutdown()


def test_twilio_backend_posts_the_message(twilio: FakeTwilio) -> None:
    sid = TwilioBackend().send(to="+4915123456789", body="Parley: 123456 is your code")
    assert sid == "SM" + "0" * 31 + "1"
    [request] = twilio.requests
    assert request["path"] == "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    expected = base64.b64encode(b"AC0123456789abcdef0123456789abcdef:secret-token").decode()
    assert request["auth"] == f"Basic {expected}"
    assert request["form"] == {
        "To": ["+4915123456789"],
        "From": ["+15005550006"],
        "Body": ["Parley: 123456 is your code"],
    }


def test_twilio_errors_are_classified(twilio: FakeTwilio) -> None:
    twilio.status = 400
    with pytest.raises(SmsPermanentError, match="not a valid phone number"):
        TwilioBackend().send(to="+49", body="x")
    twilio.status = 503
    with pytest.raises(SmsTemporaryError):
        TwilioBackend().send(to="+4915123456789", body="x")
    twilio.status = 429
    with pytest.raises(SmsTemporaryError):
        TwilioBackend().send(to="+4915123456789", body="x")


def test_twilio_unreachable_is_temporary(settings: Any) -> None:
    settings.TWILIO_API_BASE = "http://127.0.0.1:9"  # discard port: connection refused
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC1", "t", "+15005550006"
    with pytest.raises(SmsTemporaryError):
        TwilioBackend().send(to="+4915123456789", body="x")


def test_twilio_without_credentials_fails_clearly(settings: Any) -> None:
    settings.TWILIO_ACCOUNT_SID = ""
    with pytest.raises(SmsPermanentError, match="not configured"):
        TwilioBackend().send(to="+4915123456789", body="x")


def test_code_goes_out_through_twilio_from_the_job(live_db: World, twilio: FakeTwilio, fixed_code: str) -> None:
    number = fresh_mobile()
    otp_send(purpose=PhoneChallenge.Purpose.CUSTOMER_SIGN_IN, phone_number=number, message="Your code: {code}")
    run_sms_jobs()
    sent = [r for r in twilio.requests if r["form"]["To"] == [number]]
    assert len(sent) == 1
    assert sent[0]["form"]["Body"] == [f"Your code: {fixed_code}"]
    assert not SmsMessage.objects.filter(to=number).exists()


def test_console_backend_prints() -> None:
    stream = io.StringIO()
    ConsoleBackend(stream).send(to="+4915123456789", body="hello")
    assert "SMS to +4915123456789" in stream.getvalue() and "hello" in stream.getvalue()


def test_outbox_backend_stores_and_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="parley.sms")
    send_sms_now(to="+4915123456789", body="hello outbox")
    assert SmsMessage.objects.filter(to="+4915123456789", body="hello outbox").exists()
    assert "hello outbox" in caplog.text


def test_unknown_backend_is_a_clear_error(settings: Any) -> None:
    settings.PARLEY_SMS_BACKEND = "pigeon"
    with pytest.raises(SmsPermanentError, match="pigeon"):
        get_backend()


def test_outbox_page_is_for_staff_or_debug(world: World, settings: Any) -> None:
    SmsMessage.objects.create(to="+4915100000001", body="Parley: 555111 is your code")
    settings.DEBUG = False
    assert public_client().get("/dev/outbox/").status_code == 404
    assert public_client(world.owner_a).get("/dev/outbox/").status_code == 404
    response = public_client(world.staff).get("/dev/outbox/")
    assert response.status_code == 200
    assert "555111" in response.content.decode()
    filtered = public_client(world.staff).get("/dev/outbox/", {"to": "+4915100000002"})
    assert "555111" not in filtered.content.decode()
    settings.DEBUG = True
    assert public_client().get("/dev/outbox/").status_code == 200


def test_outbox_page_is_not_on_business_hosts(world: World) -> None:
    from tests.conftest import business_client

    assert business_client(world.business_a, world.staff).get("/dev/outbox/").status_code == 404


def test_sealed_text_expires_with_its_code() -> None:
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from verification.jobs import seal, unseal

    with time_machine.travel(timezone.now(), tick=False) as clock:
        token = seal("Parley: 123456")
        assert "123456" not in token
        assert unseal(token) == "Parley: 123456"
        clock.shift(timedelta(minutes=16))
        assert unseal(token) is None
    assert unseal("garbage") is None


def test_expired_job_sends_nothing(world: World, caplog: pytest.LogCaptureFixture) -> None:
    from verification.jobs import send_sms

    send_sms(to="+4915100000009", sealed_body="not-a-token", reference="otp:1")
    assert not SmsMessage.objects.filter(to="+4915100000009").exists()
    assert "dropped" in caplog.text


def test_a_text_is_sent_at_most_once_per_reference(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 10 (worker crash): the job records the attempt before calling the provider. Run
    again (a retried job) it sends nothing more; after a provider's temporary refusal it sends
    again; an attempt still open (the worker died mid-call) is never repeated."""
    from verification.jobs import seal, send_sms
    from verification.models import SmsDispatch
    from verification.sms import sms_dispatch_begin

    send_sms(to="+4915100000021", sealed_body=seal("Parley: 1"), reference="once:1")
    send_sms(to="+4915100000021", sealed_body=seal("Parley: 1"), reference="once:1")
    assert SmsMessage.objects.filter(to="+4915100000021").count() == 1
    assert SmsDispatch.objects.get(reference="once:1").status == "sent"
    # The worker died after this began: the outcome is unknown, and it is not sent again.
    assert sms_dispatch_begin(reference="once:2")
    send_sms(to="+4915100000022", sealed_body=seal("Parley: 2"), reference="once:2")
    assert not SmsMessage.objects.filter(to="+4915100000022").exists()
    assert SmsDispatch.objects.get(reference="once:2").status == "unknown"
    assert "outcome unknown" in caplog.text
    # Known not sent (the provider was busy): the retry sends it.
    SmsDispatch.objects.filter(reference="once:2").update(status="retry")
    send_sms(to="+4915100000022", sealed_body=seal("Parley: 2"), reference="once:2")
    assert SmsMessage.objects.filter(to="+4915100000022").count() == 1
