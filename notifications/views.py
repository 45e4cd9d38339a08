"""Dashboard pages: Templates (create, edit, live preview) and API (keys, request log)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages as flash
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from notifications import limits, selectors, services, webhooks
from notifications.errors import ErrorCode, NotificationError
from notifications.forms import ApiKeyForm, TemplateForm, WebhookForm
from tenancy.access import member_required


def _content(form: TemplateForm, *, name: str | None = None, language: str | None = None) -> Any:
    data = form.cleaned_data
    return services.template_content_clean(
        name=name if name is not None else data["name"],
        language=language if language is not None else data["language"],
        category=data["category"],
        header=data["header"],
        body=data["body"],
        footer=data["footer"],
        buttons=form.buttons(),
    )


def _form_error(form: TemplateForm, error: NotificationError) -> None:
    field = error.extra.get("field")
    if field == "buttons":
        field = "button_1"
    form.add_error(field if field in form.fields else None, error.message)


@member_required(manage=True)
def templates(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    form = TemplateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            template = services.template_create(business=business, actor=request.user, content=_content(form))  # type: ignore[arg-type]
        except NotificationError as error:
            _form_error(form, error)
        else:
            flash.success(request, _("Template “%(name)s” was sent to review.") % {"name": template.name})
            return redirect("templates")
    return render(
        request,
        "notifications/templates.html",
        {
            "section": "templates",
            "form": form,
            "templates": selectors.templates_list(),
            "quality": limits.quality_rating(business=business),
            "tier": limits.tier_limit(business=business),
        },
    )


@member_required(manage=True)
def template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    try:
        template = selectors.template_get(template_id=template_id)
    except NotificationError:
        raise Http404 from None
    if request.method == "POST":
        form = TemplateForm(request.POST, initial={"name": template.name, "language": template.language})
        form.fields["name"].disabled = True
        form.fields["language"].disabled = True
        if form.is_valid():
            try:
                services.template_update(
                    business=business,
                    actor=request.user,  # type: ignore[arg-type]
                    template_id=template.pk,
                    content=_content(form, name=template.name, language=template.language),
                )
            except NotificationError as error:
                _form_error(form, error)
            else:
                flash.success(request, _("Saved. Changes go back to review before the template can be sent."))
                return redirect("templates")
    else:
        form = TemplateForm.for_template(template)
    return render(
        request, "notifications/template_edit.html", {"section": "templates", "form": form, "template": template}
    )


@member_required(manage=True)
def developers(request: HttpRequest) -> HttpResponse:
    """The API page: keys (owner-only actions), the request log, links to the docs."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    membership: Any = request.membership  # type: ignore[attr-defined]
    is_owner = membership.is_owner
    form = ApiKeyForm(request.POST or None)
    new_secret = ""
    if request.method == "POST":
        if not is_owner:
            flash.error(request, _("Only the business's owner can create API keys."))
            return redirect("developers")
        if form.is_valid():
            try:
                created = services.api_key_create(
                    business=business,
                    actor=request.user,  # type: ignore[arg-type]
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                )
            except NotificationError as error:
                form.add_error(None, error.message)
            else:
                new_secret = created.secret
                form = ApiKeyForm()
    response = render(
        request,
        "notifications/developers.html",
        {
            "section": "api",
            "form": form,
            "is_owner": is_owner,
            "new_secret": new_secret,
            "keys": selectors.api_keys_list(),
            "requests": selectors.api_requests_recent(),
            "webhook_form": WebhookForm(),
            "endpoints": selectors.webhook_endpoints_list(),
            "deliveries": selectors.webhook_deliveries_recent(),
            "api_base": business.absolute_url("/api/v1/"),
        },
    )
    if new_secret:
        response["Cache-Control"] = "no-store"  # the secret is shown once; never from a cache
    return response


@require_POST
@member_required(manage=True)
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    membership: Any = request.membership  # type: ignore[attr-defined]
    if not membership.is_owner:
        flash.error(request, _("Only the business's owner can revoke API keys."))
        return redirect("developers")
    try:
        key = services.api_key_revoke(business=business, actor=request.user, key_id=key_id)  # type: ignore[arg-type]
    except NotificationError as error:
        if error.code == ErrorCode.NOT_FOUND:
            raise Http404 from None
        raise
    flash.success(request, _("Key “%(name)s” revoked: requests with it are refused from now on.") % {"name": key.name})
    return redirect("developers")


@require_POST
@member_required(manage=True)
def webhook_create(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    form = WebhookForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                flash.error(request, str(error))
        return redirect("developers")
    try:
        endpoint = webhooks.webhook_endpoint_create(
            business=business,
            actor=request.user,  # type: ignore[arg-type]
            url=form.cleaned_data["url"],
            event_types=form.cleaned_data["event_types"],
        )
    except NotificationError as error:
        flash.error(request, error.message)
    else:
        flash.success(
            request,
            _("Webhook added. Its signing secret (shown once): %(secret)s") % {"secret": endpoint.secret},
        )
    return redirect("developers")


@require_POST
@member_required(manage=True)
def webhook_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    return _developers_action(
        request,
        lambda: webhooks.webhook_endpoint_delete(business=business, actor=request.user, endpoint_id=endpoint_id),  # type: ignore[arg-type]
        _("Webhook removed."),
    )


@require_POST
@member_required(manage=True)
def webhook_resend(request: HttpRequest, delivery_id: int) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    return _developers_action(
        request,
        lambda: webhooks.webhook_delivery_resend(business=business, actor=request.user, delivery_id=delivery_id),  # type: ignore[arg-type]
        _("Queued to be sent again."),
    )


def _developers_action(request: HttpRequest, action: Callable[[], object], done: str) -> HttpResponse:
    """Run one API-page action: its refusal or `done` as a message, back to the page."""
    try:
        action()
    except NotificationError as error:
        flash.error(request, error.message)
    else:
        flash.success(request, done)
    return redirect("developers")


# --- the inbox's template picker (static/parley/template_picker.js) ---------------------------------


def _picker_error(error: NotificationError) -> JsonResponse:
    return JsonResponse({"error": {"code": str(error.code), "message": error.message}}, status=error.http_status)


@require_GET
@member_required()
def inbox_templates(request: HttpRequest) -> HttpResponse:
    """The approved templates for a conversation (`?conversation=<id>`), with their placeholders
    and the price of sending each now."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    try:
        choices = selectors.inbox_template_choices(business=business, conversation_id=request.GET.get("conversation"))
    except NotificationError as error:
        return _picker_error(error)
    return JsonResponse({"templates": choices})


@require_POST
@member_required()
def inbox_template_send(request: HttpRequest) -> HttpResponse:
    """Send one: JSON {conversation_id, template_id, parameters, client_msg_id}. The message
    reaches the thread live like any other; the answer says what it cost."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        data = None
    if not isinstance(data, dict):
        return _picker_error(NotificationError(ErrorCode.INVALID, _("Send a JSON object.")))
    try:
        sent = services.template_send_from_inbox(
            business=business,
            user=request.user,  # type: ignore[arg-type]
            conversation_id=data.get("conversation_id"),
            template_id=data.get("template_id"),
            parameters=data.get("parameters"),
            client_msg_id=data.get("client_msg_id") or "",
        )
    except NotificationError as error:
        return _picker_error(error)
    return JsonResponse(
        {"message_id": sent.message.pk, "price": {"amount": f"{sent.price:.4f}", "currency": "EUR", "per": sent.per}},
        status=201,
    )
