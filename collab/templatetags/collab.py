from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import json_script
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

register = template.Library()


@register.simple_tag(takes_context=True)
def collab_config(context: dict[str, Any]) -> SafeString:
    """The inbox's collaboration module (static/parley/collab.js): its URLs and strings."""
    business = context["request"].tenant
    return json_script(
        {
            "business_name": business.display_name,
            "urls": {
                "setup": reverse("collab_setup_api"),
                "labels": reverse("collab_conversation_labels"),
                "macro": reverse("collab_macro_apply", args=[0]).replace("/0/", "/{id}/"),
                "notifications": reverse("collab_notifications"),
                "search": reverse("collab_search"),
                "sla": reverse("insights_sla"),
            },
            "strings": {
                "notifications": _("Notifications"),
                "noNotifications": _("Nobody mentioned you yet."),
                "markAllRead": _("Mark all as read"),
                "mentioned": _("%(actor)s mentioned you in %(contact)s"),
                "mentionAnnounce": _("%(actor)s mentioned you: %(excerpt)s"),
                "labels": _("Labels"),
                "noLabels": _("No labels yet: owners and admins add them under Labels, replies and macros."),
                "macros": _("Macros"),
                "applyMacro": _("Apply"),
                "chooseMacro": _("Run a macro…"),
                "macroDone": _("Macro applied."),
                "firstResponseDue": _("First response due %(time)s"),
                "firstResponseLate": _("First response overdue since %(time)s"),
                "resolutionDue": _("Resolution due %(time)s"),
                "resolutionLate": _("Resolution overdue since %(time)s"),
                "slaLate": _("SLA"),
                "breached": _("%(n)s open conversations are past their SLA targets."),
                "breachedOne": _("1 open conversation is past its SLA target."),
                "results": _("%(n)s found"),
                "moreResults": _("More results"),
                "noResults": _("Nothing found."),
                "clear": _("Back to the inbox"),
                "cannedHint": _("Canned replies"),
                "mentionHint": _("Mention a teammate"),
                "error": _("That did not work. Please try again."),
            },
        },
        "collab-config",
    )
