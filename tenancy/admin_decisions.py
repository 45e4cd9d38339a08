"""Staff decisions on what businesses submit (badge applications, message templates), written
once for every admin that has them: ask for the reason on a confirmation page, require one where
the business must be told why, apply the service to each selected row, and report what was done
and what was refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy


class DecisionForm(forms.Form):
    """The reason staff give with a decision (at most `max_length`: the model field's limit)."""

    def __init__(self, *args: Any, max_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"] = forms.CharField(
            label=gettext_lazy("Reason (sent to the business)"),
            required=False,
            max_length=max_length,
            widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        )


class DecisionAdminMixin:
    """For a ModelAdmin: `decision(...)` answers an action (or a detail page's decide view).

    Set `decision_template` (extends admin/decision.html), `decision_target` (the service's
    keyword for the row, e.g. "review"), `decision_done` (a message with %(n)d and %(what)s),
    and where the model limits it, `decision_reason_max_length`."""

    decision_template: str
    decision_target: str
    decision_done: Any
    decision_reason_max_length: int | None = None

    def decision_label(self, obj: Any) -> str:
        """How a refused row is named in the error message."""
        return str(obj)

    def decision(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        *,
        action: str,
        title: str,
        decide: Callable[..., Model],
        reason_required: bool,
        cancel_url: str,
    ) -> HttpResponse | None:
        """None once decided (the admin goes back to the list); else the confirmation page."""
        admin: Any = self
        max_length = self.decision_reason_max_length
        if "confirm" in request.POST:
            form = DecisionForm(request.POST, max_length=max_length)
            if form.is_valid() and (form.cleaned_data["reason"].strip() or not reason_required):
                done, failed = 0, []
                for obj in queryset:
                    try:
                        decide(**{self.decision_target: obj}, reviewer=request.user, reason=form.cleaned_data["reason"])
                        done += 1
                    except ValidationError as error:
                        failed.append(f"{self.decision_label(obj)}: {' '.join(error.messages)}")
                if done:
                    admin.message_user(request, self.decision_done % {"n": done, "what": title}, messages.SUCCESS)
                for line in failed:
                    admin.message_user(request, line, messages.ERROR)
                return None
            if form.is_valid():
                form.add_error("reason", _("Please give a reason; the business will read it."))
        else:
            form = DecisionForm(max_length=max_length)
        return TemplateResponse(
            request,
            self.decision_template,
            {
                **admin.admin_site.each_context(request),
                "title": title,
                "objects": queryset,
                "form": form,
                "action": action,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "opts": admin.model._meta,
                "reason_required": reason_required,
                "cancel_url": cancel_url,
            },
        )
