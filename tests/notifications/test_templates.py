"""Templates: validation, the staff review queue, re-review on change, dashboard notices."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from notifications import services
from notifications.errors import ErrorCode, NotificationError
from notifications.models import Template
from template_reviews.models import TemplateReview
from template_reviews.services import template_review_approve, template_review_reject
from tenancy.notices import dashboard_notices
from tests.conftest import World, business_client, in_business, public_client
from tests.notifications.conftest import approved_template, template_content


def test_placeholders_are_named_in_order(world: World) -> None:
    with in_business(world.business_a):
        template = services.template_create(business=world.business_a, actor=None, content=template_content())
        assert template.placeholders == ["flight", "time"]
        assert template.status == Template.Status.PENDING
        review = TemplateReview.objects.get(business=world.business_a, template_id=template.pk)
        assert (review.status, review.revision, review.body) == ("pending", 1, template.body)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "Flight Change!"}, "name"),
        ({"language": "english"}, "language"),
        ({"category": "spam"}, "category"),
        ({"body": ""}, "body"),
        ({"body": "Hi {{ Name }}"}, "body"),
        ({"body": "x" * 1025}, "body"),
        ({"footer": "{{x}}"}, "footer"),
        ({"buttons": ["a", "b", "c", "d"]}, "buttons"),
        ({"buttons": ["x" * 26]}, "buttons"),
        ({"buttons": "OK"}, "buttons"),
    ],
)
def test_bad_template_content_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(NotificationError) as info:
        template_content(**overrides)
    assert info.value.code == ErrorCode.INVALID
    assert info.value.extra["field"] == field


def test_duplicate_name_and_language_is_refused(world: World) -> None:
    with in_business(world.business_a):
        services.template_create(business=world.business_a, actor=None, content=template_content())
        with pytest.raises(NotificationError) as info:
            services.template_create(business=world.business_a, actor=None, content=template_content())
        assert info.value.code == ErrorCode.DUPLICATE
        # Another language is another template.
        services.template_create(business=world.business_a, actor=None, content=template_content(language="de"))


def test_staff_approve_and_a_change_sends_it_back_to_review(world: World) -> None:
    with in_business(world.business_a):
        template = approved_template(world.business_a, world.staff)
        assert template.status == Template.Status.APPROVED
        assert AuditEvent.objects.filter(action="template.approve", business=world.business_a).exists()
        updated = services.template_update(
            business=world.business_a,
            actor=world.owner_a,
            template_id=template.pk,
            content=template_content(body="Flight {{flight}} is delayed to {{time}}."),
        )
        assert (updated.status, updated.revision) == (Template.Status.PENDING, 2)
        reviews = TemplateReview.objects.filter(business=world.business_a, template_id=template.pk).order_by("revision")
        assert [(r.revision, r.status) for r in reviews] == [(1, "approved"), (2, "pending")]
        # Saving without a change does not reset the review.
        same = services.template_update(
            business=world.business_a,
            actor=world.owner_a,
            template_id=template.pk,
            content=template_content(body="Flight {{flight}} is delayed to {{time}}."),
        )
        assert same.revision == 2


def test_a_stale_review_cannot_approve_the_newer_text(world: World) -> None:
    with in_business(world.business_a):
        template = services.template_create(business=world.business_a, actor=None, content=template_content())
        old = TemplateReview.objects.get(business=world.business_a, template_id=template.pk, revision=1)
        services.template_update(
            business=world.business_a,
            actor=None,
            template_id=template.pk,
            content=template_content(body="Something else {{flight}}"),
        )
        with pytest.raises(ValidationError):
            template_review_approve(review=old, reviewer=world.staff)
        template.refresh_from_db()
        assert template.status == Template.Status.PENDING


def test_reject_needs_a_reason_and_reaches_the_dashboard(world: World) -> None:
    with in_business(world.business_a):
        template = services.template_create(business=world.business_a, actor=None, content=template_content())
        review = TemplateReview.objects.get(business=world.business_a, template_id=template.pk)
        with pytest.raises(ValidationError):
            template_review_reject(review=review, reviewer=world.staff, reason="  ")
        template_review_reject(review=review, reviewer=world.staff, reason="Marketing in a utility template")
        template.refresh_from_db()
        assert (template.status, template.rejection_reason) == ("rejected", "Marketing in a utility template")
    notices = dashboard_notices(business=world.business_a)
    assert any("rejected" in n.title and n.body == "Marketing in a utility template" for n in notices)
    # Business B hears nothing of A's templates.
    assert not any("flight_change" in n.title for n in dashboard_notices(business=world.business_b))


def test_admin_review_queue_approves_with_the_action(world: World) -> None:
    with in_business(world.business_a):
        template = services.template_create(business=world.business_a, actor=None, content=template_content())
    review = TemplateReview.objects.get(business=world.business_a, template_id=template.pk)
    client = public_client(world.staff)
    listing = client.get("/admin/template_reviews/templatereview/?status__exact=pending")
    assert listing.status_code == 200 and "flight_change" in listing.content.decode()
    response = client.post(
        "/admin/template_reviews/templatereview/",
        {"action": "approve", "_selected_action": [review.pk], "confirm": "yes", "reason": ""},
    )
    assert response.status_code == 302
    with in_business(world.business_a):
        assert Template.objects.get(pk=template.pk).status == Template.Status.APPROVED
    reject = client.post(
        "/admin/template_reviews/templatereview/",
        {"action": "reject", "_selected_action": [review.pk], "confirm": "yes", "reason": ""},
    )
    assert reject.status_code == 200 and "Please give a reason" in reject.content.decode()


def test_dashboard_templates_page_creates_and_edits(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    page = client.get("/templates/")
    assert page.status_code == 200 and "data-template-preview" in page.content.decode()
    response = client.post(
        "/templates/",
        {
            "name": "parcel_ready",
            "language": "de",
            "category": "utility",
            "body": "Ihr Paket {{parcel}} liegt bereit.",
            "button_1": "Danke",
        },
    )
    assert response.status_code == 302
    with in_business(world.business_a):
        template = Template.objects.get(name="parcel_ready")
        assert template.buttons == ["Danke"]
    bad = client.post("/templates/", {"name": "x", "language": "de", "category": "utility", "body": "Hi {{"})
    assert bad.status_code == 200 and "Write placeholders as" in bad.content.decode()
    edit = client.post(
        f"/templates/{template.pk}/",
        {"category": "utility", "body": "Ihr Paket {{parcel}} ist da.", "name": "ignored", "language": "en"},
    )
    assert edit.status_code == 302
    with in_business(world.business_a):
        template.refresh_from_db()
        assert (template.name, template.language, template.revision) == ("parcel_ready", "de", 2)
    # Agents cannot open it; another business's template id is a 404 there.
    assert business_client(world.business_a, world.agent_a).get("/templates/").status_code == 403
    assert business_client(world.business_b, world.owner_b).get(f"/templates/{template.pk}/").status_code == 404


def test_templates_and_api_pages_in_german(world: World) -> None:
    from django.utils import translation

    client = business_client(world.business_a, world.owner_a)
    try:
        templates_html = client.get("/templates/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
        api_html = client.get("/developers/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    finally:
        translation.deactivate()
    assert "Neue Vorlage" in templates_html and "Qualitätsbewertung" in templates_html
    assert "API-Schlüssel anlegen" in api_html and "Zustellprotokoll" not in api_html  # no deliveries yet
