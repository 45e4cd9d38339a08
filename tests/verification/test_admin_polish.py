"""The staff admin reads as finished: distinct section names, decisions on the badge detail page
(no Save buttons with nothing to edit), "Business today" worded for staff, a favicon."""

from __future__ import annotations

import re

from django.templatetags.static import static

from tests.conftest import World, business_client, public_client
from tests.verification.test_badge import ready, submit
from verification.models import BadgeApplication


def test_admin_sections_have_distinct_names(world: World) -> None:
    html = public_client(world.staff).get("/admin/").content.decode()
    names = re.findall(r'<a href="/admin/[a-z_]+/" class="section"[^>]*>([^<]+)</a>', html)
    assert names, "no app sections found"
    assert len(names) == len(set(names)), names
    assert "People and seats" in names


def test_badge_detail_page_decides_without_save_buttons(world: World) -> None:
    application = submit(world, ready(world))
    staff = public_client(world.staff)
    change = f"/admin/verification/badgeapplication/{application.pk}/change/"
    html = staff.get(change).content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html and 'name="_addanother"' not in html
    approve = f"/admin/verification/badgeapplication/{application.pk}/decide/approve/"
    reject = f"/admin/verification/badgeapplication/{application.pk}/decide/reject/"
    assert approve in html and reject in html
    assert "/decide/revoke/" not in html  # nothing to revoke yet

    # Reject asks for a reason, and insists on one.
    assert "Reason (sent to the business)" in staff.get(reject).content.decode()
    empty = staff.post(reject, {"confirm": "yes", "reason": " "})
    assert empty.status_code == 200 and "Please give a reason" in empty.content.decode()
    application.refresh_from_db()
    assert application.status == BadgeApplication.Status.SUBMITTED

    done = staff.post(reject, {"confirm": "yes", "reason": "The register entry is for another company."})
    assert done.status_code == 302 and done["Location"] == change
    application.refresh_from_db()
    assert application.status == BadgeApplication.Status.REJECTED
    assert application.decision_reason == "The register entry is for another company."
    assert "/decide/" not in staff.get(change).content.decode()  # decided: no more buttons


def test_badge_detail_approve_and_bad_decisions(world: World) -> None:
    application = submit(world, ready(world))
    staff = public_client(world.staff)
    base = f"/admin/verification/badgeapplication/{application.pk}"
    assert staff.post(f"{base}/decide/approve/", {"confirm": "yes", "reason": ""}).status_code == 302
    application.refresh_from_db()
    assert application.status == BadgeApplication.Status.APPROVED
    assert f"{base}/decide/revoke/" in staff.get(f"{base}/change/").content.decode()
    assert staff.get(f"{base}/decide/explode/").status_code == 404
    assert staff.get("/admin/verification/badgeapplication/999999/decide/approve/").status_code == 404
    # Not staff: the admin's login, not a decision.
    owner = public_client(world.owner_a).post(f"{base}/decide/revoke/", {"confirm": "yes", "reason": "x"})
    assert owner.status_code == 302 and "/admin/login/" in owner["Location"]


def test_business_today_is_worded_for_staff(world: World) -> None:
    application = submit(world, ready(world))
    html = public_client(world.staff).get(f"/admin/verification/badgeapplication/{application.pk}/change/")
    text = html.content.decode()
    today = text.split("Business today", 1)[1].split("</div>", 3)[:3]
    block = "".join(today)
    assert block.count("Display name") == 1
    assert "on your account" not in text
    assert "Applicant has two-factor authentication" in text


def test_admin_and_every_host_have_a_favicon(world: World) -> None:
    icon = static("parley/favicon.svg")
    assert f'<link rel="icon" href="{icon}"' in public_client(world.staff).get("/admin/").content.decode()
    for client in (public_client(), business_client(world.business_a)):
        response = client.get("/favicon.ico")
        assert response.status_code == 301 and response["Location"] == icon
