"""Staff decisions in the admin are one flow (tenancy.admin_decisions) for badge applications and
message templates: a confirmation page listing the rows, a reason where the business must be told
why (within the model's limit), the decision applied per row and refusals reported by name."""

from __future__ import annotations

from django.contrib import admin

from template_reviews.admin import TemplateReviewAdmin
from template_reviews.models import TemplateReview
from tenancy.admin_decisions import DecisionAdminMixin
from tests.conftest import World, in_business, public_client
from tests.notifications.conftest import template_content
from tests.verification.test_badge import ready, submit
from verification.admin import BadgeApplicationAdmin
from verification.models import BadgeApplication

TEMPLATES = "/admin/template_reviews/templatereview/"
BADGES = "/admin/verification/badgeapplication/"


def _review(world: World) -> TemplateReview:
    from notifications import services

    with in_business(world.business_a):
        template = services.template_create(business=world.business_a, actor=None, content=template_content())
    return TemplateReview.objects.get(business=world.business_a, template_id=template.pk)


def test_both_admins_decide_through_the_one_flow() -> None:
    for model, admin_class in ((TemplateReview, TemplateReviewAdmin), (BadgeApplication, BadgeApplicationAdmin)):
        assert isinstance(admin.site._registry[model], admin_class)
        assert issubclass(admin_class, DecisionAdminMixin)
        assert "_decision" not in vars(admin_class)


def test_the_confirmation_pages_list_the_rows_and_ask_for_the_reason(world: World) -> None:
    review = _review(world)
    application = submit(world, ready(world))
    staff = public_client(world.staff)
    for url, pk, shown in (
        (TEMPLATES, review.pk, review.name),
        (BADGES, application.pk, world.business_a.display_name),
    ):
        page = staff.post(url, {"action": "reject", "_selected_action": [pk]})
        html = page.content.decode()
        assert page.status_code == 200 and shown in html and "Reason (sent to the business)" in html
        assert f'name="_selected_action" value="{pk}"' in html and f'href="{url}"' in html  # cancel goes back


def test_a_template_reason_keeps_within_its_column(world: World) -> None:
    review = _review(world)
    staff = public_client(world.staff)
    too_long = staff.post(
        TEMPLATES, {"action": "reject", "_selected_action": [review.pk], "confirm": "yes", "reason": "x" * 501}
    )
    assert too_long.status_code == 200 and 'maxlength="500"' in too_long.content.decode()
    review.refresh_from_db()
    assert review.status == TemplateReview.Status.PENDING
    done = staff.post(
        TEMPLATES, {"action": "reject", "_selected_action": [review.pk], "confirm": "yes", "reason": "Too vague."}
    )
    assert done.status_code == 302
    review.refresh_from_db()
    assert review.status == TemplateReview.Status.REJECTED and review.reason == "Too vague."


def test_a_refused_row_is_named_and_the_others_are_decided(world: World) -> None:
    application = submit(world, ready(world))
    staff = public_client(world.staff)
    approve = {"action": "approve", "_selected_action": [application.pk], "confirm": "yes", "reason": ""}
    assert staff.post(BADGES, approve).status_code == 302
    # Approving it again is refused by the service: the message names the business.
    again = staff.post(BADGES, approve, follow=True)
    assert f"{world.business_a}:" in again.content.decode()
    application.refresh_from_db()
    assert application.status == BadgeApplication.Status.APPROVED
