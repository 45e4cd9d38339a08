"""Reliability check 6: a one-time-code attack through the customer sign-in pages.

An attacker requests codes for many numbers from many addresses (IPv4 and addresses inside one
IPv6 /64) and guesses codes: 600 guesses in `make test`, 10,000 under `make reliability`.
Passing means zero sign-ins, and every limit observed in the database: at most 5 codes per
number per hour, 5 checks per code, 20 codes per address (an IPv6 /64 counting as one), and a
clear 429 whenever a code request is refused.
"""

from __future__ import annotations

import secrets
from collections import Counter

import pytest
from django.db.models import Count, Max
from django.test import Client

from reliability.report import long_run, record
from tests.conftest import World
from verification.models import PhoneChallenge
from verification.otp import (
    MAX_CHECKS_PER_CODE,
    MAX_SENDS_PER_IP_PER_HOUR,
    MAX_SENDS_PER_NUMBER_PER_HOUR,
    rate_limit_address,
)

pytestmark = pytest.mark.reliability
GUESSES_PER_ROUND = MAX_CHECKS_PER_CODE + 1  # one more than allowed: the extra must never count


def attacker_addresses(count: int) -> list[str]:
    """IPv4 addresses, and for each an IPv6 /64 from which the attacker rotates addresses
    (the limit must count each /64 as one address)."""
    v4 = [f"203.0.113.{i % 250 + 1}" for i in range(count)]
    v6 = [f"2001:db8:0:{i}::{j:x}" for i in range(count) for j in range(1, 9)]
    return v4 + v6


def test_code_guessing_never_signs_in_and_every_limit_holds(world: World) -> None:
    guesses = 10_000 if long_run() else 300
    # Seven rounds of (request a code, guess six times) per number: past the number limit (5).
    numbers = ["+49151" + "".join(secrets.choice("0123456789") for _ in range(8)) for _ in range(guesses // 42)]
    # Few enough addresses that the per-address limit (20) is reached too.
    addresses = attacker_addresses(max(1, len(numbers) // 10))
    clients = {number: Client(HTTP_HOST="parley.localhost") for number in numbers}
    signed_in = 0
    made = 0
    statuses: Counter[str] = Counter()
    refusal_messages: set[str] = set()
    send_attempts = 0
    round_no = 0
    while made < guesses:
        for index, number in enumerate(numbers):
            if made >= guesses:
                break
            address = addresses[(index + round_no * 7) % len(addresses)]
            client = clients[number]
            sent = client.post("/me/", {"region": "DE", "phone": number}, REMOTE_ADDR=address)
            send_attempts += 1
            statuses[f"code request {sent.status_code}"] += 1
            if sent.status_code == 429:
                refusal_messages.add(
                    "number"
                    if b"for this number" in sent.content
                    else "address"
                    if b"from your network" in sent.content
                    else "?"
                )
            else:
                assert sent.status_code == 302, sent.content[:300]
            for _ in range(GUESSES_PER_ROUND):
                guess = f"{secrets.randbelow(10**6):06d}"
                answer = client.post("/me/code/", {"code": guess}, REMOTE_ADDR=address)
                made += 1
                statuses[f"guess {answer.status_code}"] += 1
                if answer.status_code == 302 and "/me/code/" not in answer["Location"]:
                    signed_in += 1
        round_no += 1

    per_number = PhoneChallenge.objects.filter(phone_number__in=numbers).values("phone_number").annotate(n=Count("id"))
    most_codes_per_number = max(row["n"] for row in per_number)
    most_checks_per_code = PhoneChallenge.objects.filter(phone_number__in=numbers).aggregate(m=Max("checks"))["m"]
    by_address: Counter[str] = Counter()
    for ip in PhoneChallenge.objects.filter(phone_number__in=numbers).values_list("ip_address", flat=True):
        by_address[rate_limit_address(str(ip)) or "none"] += 1
    most_codes_per_address = max(by_address.values())
    checks = sum(PhoneChallenge.objects.filter(phone_number__in=numbers).values_list("checks", flat=True))

    passed = (
        signed_in == 0
        and most_codes_per_number <= MAX_SENDS_PER_NUMBER_PER_HOUR
        and most_checks_per_code <= MAX_CHECKS_PER_CODE
        and most_codes_per_address <= MAX_SENDS_PER_IP_PER_HOUR
        and refusal_messages >= {"number", "address"}
    )
    record(
        check="6. One-time-code attack",
        tried=f"{made:,} guesses on {len(numbers)} numbers from {len(addresses)} addresses "
        f"({len({rate_limit_address(a) for a in addresses})} after /64 grouping), {send_attempts:,} code requests",
        result=f"{signed_in} sign-ins; {checks:,} guesses reached a live code; max {most_codes_per_number} codes/number, "
        f"{most_checks_per_code} checks/code, {most_codes_per_address} codes/address; refusals: {sorted(refusal_messages)}",
        passed=passed,
    )
    assert signed_in == 0
    assert most_codes_per_number <= MAX_SENDS_PER_NUMBER_PER_HOUR
    assert most_checks_per_code <= MAX_CHECKS_PER_CODE
    assert most_codes_per_address <= MAX_SENDS_PER_IP_PER_HOUR
    assert checks <= MAX_CHECKS_PER_CODE * sum(row["n"] for row in per_number)
    # Both limits were actually reached, and each refusal said which one.
    assert refusal_messages >= {"number", "address"}, statuses
