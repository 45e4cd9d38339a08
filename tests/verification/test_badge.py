"""The green-badge state machine: requirements, submit, staff decisions in admin, 30-day
re-apply, and the badge returning to review when the name or number changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone, translation

from accounts.models import Membership, User
from audit.models import AuditEvent
from tenancy.models import Business
from tests.conftest import World, business_client, public_client
from tests.verification.conftest import complete_profile, enable_totp, fresh_mobile
from verification.models import BadgeApplication, BusinessNotice
from verification.services import (
    badge_application_approve,
    badge_application_reject,
    badge_application_save,
    badge_revoke,
    business_profile_update,
)

EVIDENCE = {"website": "https://alpha.example", "press_links": "", "registration_number": "HRB 12345 B"}


def ready(world: World) -> Business:
    business = complete_profile(Business.objects.get(pk=world.business_a.pk))
    enable_totp(world.owner_a)
    return business


def submit(world: World, business: Business) -> BadgeApplication:
    return badge_application_save(business=business, actor=world.owner_a, submit=True, **EVIDENCE)


def admin_decide(world: World, application: BadgeApplication, action: str, reason: str = "") -> Any:
    return public_client(world.staff).post(
        "/admin/verification/badgeapplication/",
        {"action": action, "_selected_action": [application.pk], "confirm": "yes", "reason": reason},
    )


def test_cannot_submit_until_every_requirement_is_met(world: World) -> None:
    business = Business.objects.get(pk=world.business_a.pk)
    with pytest.raises(ValidationError) as error:
        submit(world, business)
    message = " ".join(error.value.messages)
    assert "a verified phone number" in message
    assert "a complete profile" in message
    assert "two-factor authentication" in message

    complete_profile(business)
    with pytest.raises(ValidationError, match="two-factor"):
        submit(world, business)
    enable_totp(world.owner_a)
    application = submit(world, business)
    assert application.status == BadgeApplication.Status.SUBMITTED
    assert Business.objects.get(pk=business.pk).badge_status == "submitted"
    assert not Business.objects.get(pk=business.pk).badge_visible


def test_profile_incomplete_blocks_application(world: World) -> None:
    business = ready(world)
    business.logo = ""  # type: ignore[assignment]
    business.save()
    with pytest.raises(ValidationError, match="complete profile"):
        submit(world, business)


def test_only_owners_apply(world: World) -> None:
    business = ready(world)
    admin = User.objects.create_user("admin@alpha.test", "x")
    Membership.objects.create(user=admin, business=business, role=Membership.Role.ADMIN)
    enable_totp(admin)
    with pytest.raises(PermissionDenied):
        badge_application_save(business=business, actor=admin, submit=True, **EVIDENCE)
    with pytest.raises(PermissionDenied):
        badge_application_save(business=business, actor=world.owner_b, submit=True, **EVIDENCE)
    response = business_client(business, admin).post("/verification/badge/", {"action": "submit", **EVIDENCE})
    assert response.status_code == 403
    assert "Only an owner" in response.content.decode()


def test_draft_then_submit_through_the_page(world: World) -> None:
    business = ready(world)
    client = business_client(business, world.owner_a)
    response = client.post(
        "/verification/badge/",
        {
            "action": "draft",
            "website": "https://alpha.example",
            "press_links": "https://news.example/a\nnews.example/b",
            "registration_number": "HRB 1",
        },
    )
    assert response.status_code == 302
    draft = BadgeApplication.objects.get(business=business)
    assert draft.status == "draft"
    assert draft.press_link_list == ["https://news.example/a", "https://news.example/b"]
    bad = client.post("/verification/badge/", {"action": "submit", "press_links": "not a link"})
    assert bad.status_code == 400 and "is not a web address" in bad.content.decode()
    client.post(
        "/verification/badge/", {"action": "submit", "website": "https://alpha.example", "registration_number": "HRB 1"}
    )
    application = BadgeApplication.objects.get(business=business)  # the same row, now submitted
    assert application.pk == draft.pk and application.status == "submitted"
    assert application.submitted_by == world.owner_a
    assert "Our team is reviewing" in client.get("/verification/").content.decode()
    again = client.post("/verification/badge/", {"action": "submit", **EVIDENCE})
    assert again.status_code == 400 and "already with our team" in again.content.decode()


def test_staff_approve_in_admin(world: World, django_capture_on_commit_callbacks: Any) -> None:
    business = ready(world)
    application = submit(world, business)
    # The action first asks for a reason.
    page = public_client(world.staff).post(
        "/admin/verification/badgeapplication/", {"action": "approve", "_selected_action": [application.pk]}
    )
    assert page.status_code == 200 and "Reason (sent to the business)" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_decide(world, application, "approve", "Checked the register.")
    assert response.status_code == 302
    application.refresh_from_db()
    assert application.status == "approved"
    assert application.reviewed_by == world.staff
    assert application.reviewed_at is not None
    assert application.decision_reason == "Checked the register."
    assert Business.objects.get(pk=business.pk).badge_visible
    event = AuditEvent.objects.get(action="badge.approved", business=business)
    assert event.actor == world.staff and event.data == {"reason": "Checked the register."}
    assert [m.to for m in mail.outbox] == [[world.owner_a.email]]
    assert "verified" in mail.outbox[0].subject
    notice = BusinessNotice.objects.get(business=business)
    assert notice.title == "Your green badge is live"
    dashboard = business_client(business, world.owner_a).get("/verification/").content.decode()
    assert "Your green badge is live" in dashboard
    assert 'aria-label="Verified business"' in dashboard
    # The notice can be dismissed, by this business only.
    business_client(world.business_b, world.owner_b).post(f"/verification/notices/{notice.pk}/dismiss/")
    assert BusinessNotice.objects.get(pk=notice.pk).dismissed_at is None
    business_client(business, world.owner_a).post(f"/verification/notices/{notice.pk}/dismiss/")
    assert BusinessNotice.objects.get(pk=notice.pk).dismissed_at is not None


def test_admin_is_staff_only(world: World) -> None:
    response = public_client(world.owner_a).get("/admin/verification/badgeapplication/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_reject_needs_reason_and_blocks_reapply_for_30_days(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    business = ready(world)
    application = submit(world, business)
    no_reason = admin_decide(world, application, "reject", "")
    assert no_reason.status_code == 200 and "Please give a reason" in no_reason.content.decode()
    application.refresh_from_db()
    assert application.status == "submitted"

    with time_machine.travel(timezone.now(), tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            admin_decide(world, application, "reject", "The website does not mention this number.")
        application.refresh_from_db()
        assert application.status == "rejected" and application.reviewed_by == world.staff
        assert Business.objects.get(pk=business.pk).badge_status == "rejected"
        assert "does not mention this number" in mail.outbox[0].body
        assert AuditEvent.objects.filter(action="badge.rejected", business=business).exists()

        clock.shift(timedelta(days=29, hours=23))
        with pytest.raises(ValidationError, match="apply again from"):
            submit(world, business)
        page = business_client(business, world.owner_a).get("/verification/").content.decode()
        assert "You can apply again from" in page

        clock.shift(timedelta(hours=2))
        second = submit(world, business)
        assert second.pk != application.pk and second.status == "submitted"
        assert BadgeApplication.objects.filter(business=business).count() == 2


def test_decisions_only_from_the_right_state(world: World) -> None:
    business = ready(world)
    application = submit(world, business)
    badge_application_approve(application=application, reviewer=world.staff)
    with pytest.raises(ValidationError):
        badge_application_reject(application=application, reviewer=world.staff, reason="late")
    response = admin_decide(world, application, "approve")
    assert response.status_code == 302
    messages = [m.message for m in response.wsgi_request._messages]  # type: ignore[attr-defined]
    assert any("that decision does not apply" in str(m) for m in messages)


def test_revoke_hides_badge_and_waits_30_days(world: World) -> None:
    business = ready(world)
    application = submit(world, business)
    badge_application_approve(application=application, reviewer=world.staff)
    with pytest.raises(ValidationError):
        badge_revoke(application=application, reviewer=world.staff, reason="")
    badge_revoke(application=application, reviewer=world.staff, reason="Impersonation confirmed.")
    assert not Business.objects.get(pk=business.pk).badge_visible
    with pytest.raises(ValidationError, match="apply again"):
        submit(world, business)


def test_badge_notices_are_shown_in_the_readers_language(world: World, django_capture_on_commit_callbacks: Any) -> None:
    """Staff decide in English; the business reads German: the notice is stored untranslated and
    translated when shown, on the overview (/) and on /verification/ (it was English there)."""
    business = ready(world)
    application = submit(world, business)
    name = business.display_name
    try:
        with django_capture_on_commit_callbacks(execute=True):
            admin_decide(world, application, "approve", "Register entry checked.")
        owner = business_client(business, world.owner_a)
        for path in ("/", "/verification/"):
            page = owner.get(path, HTTP_ACCEPT_LANGUAGE="de").content.decode()
            assert "Ihr grünes Abzeichen ist aktiv" in page, path
            assert f"Kunden sehen jetzt das Abzeichen „Verifiziert“ neben {name}. Register entry checked." in page
            assert "Your green badge is live" not in page and "Customers now see" not in page
        english = owner.get("/verification/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert f"Customers now see the verified badge next to {name}. Register entry checked." in english
        # The owner renames the business in English; a German reader sees the whole notice in German.
        business = Business.objects.get(pk=business.pk)
        fields = ("description", "category", "website", "email", "address")
        profile = {field: getattr(business, field) for field in fields}
        business_profile_update(business=business, actor=world.owner_a, display_name="Ganz Andere Bank", **profile)
        page = owner.get("/verification/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
        page = page[: page.index('id="badge-h"')]  # the notices
        assert "Ihr Abzeichen wird erneut geprüft" in page
        assert f"Der Anzeigename wurde von „{name}“ in „Ganz Andere Bank“ geändert." in page
        assert "Your badge is back in review" not in page and "The display name changed" not in page
    finally:
        translation.deactivate()


def test_display_name_change_after_approval_returns_to_review(world: World) -> None:
    business = ready(world)
    application = submit(world, business)
    badge_application_approve(application=application, reviewer=world.staff)
    assert Business.objects.get(pk=business.pk).badge_visible

    client = business_client(business, world.owner_a)
    form = {
        "display_name": business.display_name,
        "description": business.description,
        "category": business.category,
        "website": business.website,
        "email": business.email,
        "address": "Neue Straße 2, 10115 Berlin",
    }
    client.post("/verification/profile/", form)  # other fields may change freely
    assert Business.objects.get(pk=business.pk).badge_visible

    client.post("/verification/profile/", {**form, "display_name": "Totally Different Bank"})
    business = Business.objects.get(pk=business.pk)
    assert business.display_name == "Totally Different Bank"
    assert not business.badge_visible
    application.refresh_from_db()
    assert application.status == "submitted"
    assert "Totally Different Bank" in application.returned_reason
    assert AuditEvent.objects.filter(action="badge.returned_to_review", business=business).exists()
    page = client.get("/verification/").content.decode()
    assert "Your badge is back in review" in page
    # Staff approve again: visible again.
    badge_application_approve(application=application, reviewer=world.staff)
    assert Business.objects.get(pk=business.pk).badge_visible


def test_phone_change_after_approval_returns_to_review(world: World, fixed_code: str) -> None:
    business = ready(world)
    badge_application_approve(application=submit(world, business), reviewer=world.staff)
    client = business_client(business, world.owner_a)
    client.post("/verification/phone/", {"region": "DE", "phone": fresh_mobile()})
    assert Business.objects.get(pk=business.pk).badge_visible  # not until the new number is verified
    client.post("/verification/phone/confirm/", {"code": fixed_code})
    business = Business.objects.get(pk=business.pk)
    assert not business.badge_visible and business.badge_status == "submitted"
    assert "phone number changed" in BadgeApplication.objects.get(business=business).returned_reason


def test_name_change_before_approval_changes_nothing(world: World) -> None:
    business = ready(world)
    submit(world, business)
    business_profile_update(
        business=business,
        actor=world.owner_a,
        display_name="Another Name",
        description=business.description,
        category=business.category,
        website=business.website,
        email=business.email,
        address=business.address,
    )
    assert BadgeApplication.objects.get(business=business).returned_at is None


def test_badge_of_one_business_does_not_leak_to_another(world: World) -> None:
    business = ready(world)
    badge_application_approve(application=submit(world, business), reviewer=world.staff)
    assert Business.objects.get(pk=world.business_a.pk).badge_visible
    assert not Business.objects.get(pk=world.business_b.pk).badge_visible
    page = business_client(world.business_b, world.owner_b).get("/verification/").content.decode()
    assert "Your green badge is live" not in page and "HRB 12345 B" not in page


def test_admin_change_page_shows_the_evidence_and_checks(world: World) -> None:
    business = ready(world)
    application = badge_application_save(
        business=business,
        actor=world.owner_a,
        submit=True,
        website="https://alpha.example",
        press_links="https://news.example/alpha",
        registration_number="HRB 777",
    )
    page = public_client(world.staff).get(f"/admin/verification/badgeapplication/{application.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "https://news.example/alpha" in html and "HRB 777" in html
    assert "two-factor authentication" in html
    assert public_client(world.staff).get("/admin/verification/phonechallenge/").status_code == 200
    assert public_client(world.staff).get("/admin/verification/smsmessage/").status_code == 200


def test_admin_decision_page_does_not_query_per_application(world: World) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = submit(world, ready(world))
    beta = complete_profile(Business.objects.get(pk=world.business_b.pk))
    enable_totp(world.owner_b)
    second = badge_application_save(business=beta, actor=world.owner_b, submit=True, **EVIDENCE)
    staff = public_client(world.staff)

    def confirmation_queries(pks: list[int]) -> int:
        with CaptureQueriesContext(connection) as queries:
            page = staff.post("/admin/verification/badgeapplication/", {"action": "approve", "_selected_action": pks})
        assert page.status_code == 200
        return len(queries)

    confirmation_queries([first.pk])  # warm caches (content types, site)
    assert confirmation_queries([first.pk, second.pk]) == confirmation_queries([first.pk])


@pytest.mark.parametrize(
    ("status", "reapply_in_days", "expected"),
    [
        (None, None, True),
        ("draft", None, True),
        ("submitted", None, False),
        ("approved", None, False),
        ("rejected", 3, False),
        ("rejected", -1, True),
        ("revoked", 3, False),
        ("revoked", -1, True),
    ],
)
def test_when_the_application_form_is_open(status: str | None, reapply_in_days: int | None, expected: bool) -> None:
    from verification.selectors import badge_application_open

    application = BadgeApplication(status=status) if status else None
    reapply = timezone.now() + timedelta(days=reapply_in_days) if reapply_in_days is not None else None
    assert badge_application_open(application=application, reapply=reapply) is expected
