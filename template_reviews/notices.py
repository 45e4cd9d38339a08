"""Template decisions on the dashboard home (registered in apps.py)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from template_reviews.models import TemplateReview
from template_reviews.selectors import template_decisions_to_show
from tenancy.models import Business
from tenancy.notices import DashboardNotice


def template_notices(business: Business) -> list[DashboardNotice]:
    url = reverse("templates")
    notices = []
    for review in template_decisions_to_show(business=business):
        if review.status == TemplateReview.Status.APPROVED:
            title = _("Template “%(name)s” (%(language)s) was approved") % {
                "name": review.name,
                "language": review.language,
            }
            notices.append(
                DashboardNotice(
                    title=title,
                    body=_("You can send it now."),
                    level="success",
                    url=url,
                    link_text=gettext_lazy("Open templates"),
                )
            )
        else:
            title = _("Template “%(name)s” (%(language)s) was rejected") % {
                "name": review.name,
                "language": review.language,
            }
            notices.append(
                DashboardNotice(
                    title=title, body=review.reason, level="warning", url=url, link_text=gettext_lazy("Open templates")
                )
            )
    return notices
