"""Every one-time-code rule, at the service level, against real PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from tests.conftest import Concurrently, World
from tests.verification.conftest import fresh_mobile, run_sms_jobs
from verification.jobs import unseal
from verification.models import PhoneChallenge, SmsMessage
from verification.otp import (
    MAX_SENDS_PER_IP_PER_HOUR,
    MAX_SENDS_PER_NUMBER_PER_HOUR,
    OtpRateLimited,
    otp_check,
    otp_send,
)

PURPOSE = PhoneChallenge.Purpose.CUSTOMER_SIGN_IN


def send(number: str, ip: str | None = None, subject: str = "") -> None:
    otp_send(purpose=PURPOSE, phone_number=number, subject=subject, ip_address=ip, message="code {code}")


def check(number: str, code: str, subject: str = "") -> bool:
    return otp_check(purpose=PURPOSE, phone_number=number, code=code, subject=subject)


def test_code_is_six_random_digits_and_works_once(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    send(number)
    assert check(number, fixed_code) is True
    assert check(number, fixed_code) is False  # single use


def test_codes_are_random(world: World) -> None:
    from verification.otp import generate_code

    codes = {generate_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 190


def test_code_is_stored_only_as_keyed_hash(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    send(number)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM verification_phonechallenge WHERE phone_number = %s", [number])
        columns = [c.name for c in cursor.description]
        row = dict(zip(columns, cursor.fetchone(), strict=True))
    for name, value in row.items():
        if name != "phone_number":
            assert fixed_code not in str(value), name
    # The hash is an HMAC with the dedicated key, salted and bound to purpose, subject and number ...
    message = f"{PURPOSE}||{number}|{row['salt']}|{fixed_code}".encode()
    assert row["code_hash"] == hmac.new(settings.OTP_HASH_KEY.encode(), message, hashlib.sha256).hexdigest()
    # ... not a plain hash anyone could brute-force over a million codes.
    assert row["code_hash"] != hashlib.sha256(fixed_code.encode()).hexdigest()
    assert row["code_hash"] != hashlib.sha256(message).hexdigest()


def test_job_queue_does_not_hold_the_code_in_clear(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    send(number)
    job = ProcrastinateJob.objects.filter(task_name="verification.send_sms", args__to=number).get()
    assert fixed_code not in str(job.args)
    assert unseal(job.args["sealed_body"]) == f"code {fixed_code}"


def test_code_expires_after_ten_minutes(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        send(number)
        clock.shift(timedelta(minutes=9, seconds=59))
        assert check(number, "000000") is False  # a wrong try inside the window
        assert check(number, fixed_code) is True

    other = fresh_mobile()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        send(other)
        clock.shift(timedelta(minutes=10, seconds=1))
        assert check(other, fixed_code) is False


def test_sixth_check_is_refused_even_with_the_right_code(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    send(number)
    for _ in range(5):
        assert check(number, "111111") is False
    assert check(number, fixed_code) is False
    assert PhoneChallenge.objects.get(phone_number=number).checks == 5
    assert PhoneChallenge.objects.get(phone_number=number).used_at is None


def test_fifth_check_may_still_succeed(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    send(number)
    for _ in range(4):
        assert check(number, "111111") is False
    assert check(number, fixed_code) is True


def test_newer_code_replaces_older(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    number = fresh_mobile()
    monkeypatch.setattr("verification.otp.generate_code", lambda: "111111")
    send(number)
    monkeypatch.setattr("verification.otp.generate_code", lambda: "222222")
    send(number)
    assert check(number, "111111") is False
    assert check(number, "222222") is True


def test_code_is_bound_to_number_purpose_and_subject(world: World, fixed_code: str) -> None:
    number = fresh_mobile()
    otp_send(purpose=PhoneChallenge.Purpose.BUSINESS_PHONE, subject="business:1", phone_number=number, message="{code}")
    assert check(number, fixed_code) is False  # other purpose
    assert (
        otp_check(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE, subject="business:2", phone_number=number, code=fixed_code
        )
        is False
    )
    assert (
        otp_check(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE,
            subject="business:1",
            phone_number=fresh_mobile(),
            code=fixed_code,
        )
        is False
    )
    assert (
        otp_check(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE, subject="business:1", phone_number=number, code=fixed_code
        )
        is True
    )


def test_unknown_number_and_garbage_codes_are_just_false(world: World) -> None:
    assert check(fresh_mobile(), "123456") is False
    number = fresh_mobile()
    send(number)
    for garbage in ("", "12345", "1234567", "abcdef", "１２３４５６"):
        assert check(number, garbage) is False


def test_five_sends_per_number_per_hour(world: World) -> None:
    number = fresh_mobile()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(MAX_SENDS_PER_NUMBER_PER_HOUR):
            send(number)
            clock.shift(timedelta(minutes=5))
        with pytest.raises(OtpRateLimited, match="this number"):
            send(number)
        # The first send leaves the one-hour window 60 minutes after it was made.
        clock.shift(timedelta(minutes=36))
        send(number)
        with pytest.raises(OtpRateLimited):
            send(number)


def test_limit_counts_every_purpose(world: World) -> None:
    number = fresh_mobile()
    for i in range(MAX_SENDS_PER_NUMBER_PER_HOUR):
        otp_send(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE,
            subject=f"business:{i}",
            phone_number=number,
            message="{code}",
        )
    with pytest.raises(OtpRateLimited):
        send(number)


def test_per_ip_limit(world: World) -> None:
    ip = "203.0.113.77"
    for _ in range(MAX_SENDS_PER_IP_PER_HOUR):
        send(fresh_mobile(), ip=ip)
    with pytest.raises(OtpRateLimited, match="network"):
        send(fresh_mobile(), ip=ip)
    send(fresh_mobile(), ip="203.0.113.78")  # another address is unaffected


def test_per_ip_limit_counts_an_ipv6_network_as_one_address(world: World) -> None:
    """Anyone with IPv6 holds a /64: rotating the last 64 bits must not reset the limit."""
    for i in range(MAX_SENDS_PER_IP_PER_HOUR):
        send(fresh_mobile(), ip=f"2001:db8:5:7::{i + 1:x}")
    with pytest.raises(OtpRateLimited, match="network"):
        send(fresh_mobile(), ip="2001:db8:5:7:ffff:1234:abcd:1")
    send(fresh_mobile(), ip="2001:db8:5:8::1")  # the neighbouring /64 is someone else


def test_ipv4_mapped_address_counts_as_the_ipv4_address(world: World) -> None:
    for _ in range(MAX_SENDS_PER_IP_PER_HOUR):
        send(fresh_mobile(), ip="198.51.100.23")
    with pytest.raises(OtpRateLimited, match="network"):
        send(fresh_mobile(), ip="::ffff:198.51.100.23")


def test_send_limit_holds_across_concurrent_connections(live_db: World, concurrently: Concurrently) -> None:
    """Ten requests at once, each on its own database connection (as several server processes
    would be): exactly five codes go out."""
    number = fresh_mobile()

    def attempt() -> bool:
        try:
            send(number)
        except OtpRateLimited:
            return False
        return True

    outcomes = ["sent" if sent else "limited" for sent in concurrently(10, attempt)]
    assert sorted(outcomes) == ["limited"] * 5 + ["sent"] * 5
    assert PhoneChallenge.objects.filter(phone_number=number).count() == 5


def test_concurrent_checks_of_the_right_code_pass_once(
    live_db: World, fixed_code: str, concurrently: Concurrently
) -> None:
    number = fresh_mobile()
    send(number)
    results = concurrently(8, lambda: check(number, fixed_code))
    assert sorted(results) == [False] * 7 + [True]
    challenge = PhoneChallenge.objects.get(phone_number=number)
    assert challenge.used_at is not None and challenge.checks == 1


def test_concurrent_wrong_checks_never_exceed_five(live_db: World, fixed_code: str, concurrently: Concurrently) -> None:
    number = fresh_mobile()
    send(number)
    results = concurrently(10, lambda: check(number, "000000"))
    assert results == [False] * 10
    assert PhoneChallenge.objects.get(phone_number=number).checks == 5
    assert check(number, fixed_code) is False  # the code is spent


@pytest.mark.real_clock  # the other process stamps its sends with the real clock
def test_send_limit_holds_across_processes(live_db: World) -> None:
    """Another process (a second server, say) sends 3; this one then gets only 2 more."""
    import subprocess
    import sys

    from tests.conftest import ROOT, test_database_url

    number = fresh_mobile()
    script = (
        "import django; django.setup()\n"
        "from verification.otp import otp_send\n"
        "for _ in range(3):\n"
        f"    otp_send(purpose='customer_sign_in', phone_number='{number}', message='{{code}}')\n"
    )
    import os

    env = dict(os.environ, DATABASE_URL=test_database_url(), DJANGO_SETTINGS_MODULE="config.settings")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    send(number)
    send(number)
    with pytest.raises(OtpRateLimited):
        send(number)


def test_queued_sms_reaches_the_outbox(live_db: World, fixed_code: str) -> None:
    number = fresh_mobile()
    send(number)
    assert not SmsMessage.objects.filter(to=number).exists()  # queued, not sent inline
    run_sms_jobs()
    message = SmsMessage.objects.get(to=number)
    assert message.body == f"code {fixed_code}"


def test_staff_cannot_delete_codes_and_so_cannot_reset_send_limits(world: World) -> None:
    from django.contrib.admin.sites import site

    from tests.conftest import public_client
    from verification.models import PhoneChallenge

    model_admin = site._registry[PhoneChallenge]
    request = public_client(world.staff).get("/admin/").wsgi_request
    request.user = world.staff
    assert model_admin.has_delete_permission(request) is False
