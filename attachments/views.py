"""Uploads from the chat page and the inbox, and the two steps that open a private file:
`/attachments/<id>/` checks who asks and redirects to a short-lived signed URL made for them;
`/attachments/f/<token>/` checks the token (this business, not expired, this viewer) and streams
the bytes from storage. Both answer "not found" for another business's or customer's file."""

from __future__ import annotations

import math
from typing import Any

from django.contrib import messages as flash
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from attachments import selectors, services
from attachments.errors import AttachmentError, AttachmentErrorCode
from attachments.signing import FileGrant, GrantRefused, grant_from_token, signed_url, url_seconds
from attachments.storage import attachment_storage
from customers.session import customer_from_session
from messaging import selectors as messaging_selectors
from messaging.errors import MessagingError
from tenancy.access import member_required

# Types a browser may show in the page; anything else is downloaded.
INLINE_TYPES = {"image/jpeg", "image/png", "image/webp", "application/pdf"}


def _error(error: AttachmentError | MessagingError, status: int | None = None) -> JsonResponse:
    code = str(error.code)
    if status is None:
        status = error.http_status if isinstance(error, AttachmentError) else 404
    body: dict[str, Any] = {"code": code, "message": error.message}
    retry_after = error.retry_after if isinstance(error, AttachmentError) else None
    if retry_after is not None:
        body["retry_after"] = retry_after
    response = JsonResponse({"error": body}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _uploaded(business: Any, uploader_key: str, request: HttpRequest, conversation_id: int | None) -> JsonResponse:
    try:
        attachment, created = services.attachment_upload(
            business=business,
            uploader_key=uploader_key,
            file=request.FILES.get("file"),
            upload_key=request.POST.get("upload_key", ""),
            conversation_id=conversation_id,
        )
    except AttachmentError as error:
        return _error(error)
    return JsonResponse({"attachment": selectors.attachment_payload(attachment)}, status=201 if created else 200)


@require_POST
def chat_upload(request: HttpRequest) -> HttpResponse:
    """A signed-in customer uploads a file for their next message on this business's chat page."""
    customer = customer_from_session(request.session)
    if customer is None:
        return JsonResponse({"error": {"code": "unauthenticated", "message": _("Please sign in.")}}, status=401)
    return _uploaded(request.tenant, f"customer:{customer.pk}", request, None)  # type: ignore[attr-defined]


@require_POST
@member_required()
def inbox_upload(request: HttpRequest) -> HttpResponse:
    """An agent uploads a file into an open conversation."""
    try:
        conversation = messaging_selectors.conversation_for_agent(conversation_id=request.POST.get("conversation_id"))
    except MessagingError as error:
        return _error(error)
    return _uploaded(request.tenant, f"user:{request.user.pk}", request, conversation.pk)  # type: ignore[attr-defined]


def _viewer(request: HttpRequest) -> str | None:
    """Who asks on this host: a member of this business, else a signed-in customer."""
    if request.user.is_authenticated and getattr(request, "membership", None):
        return selectors.viewer_key(user_id=request.user.pk)
    customer = customer_from_session(request.session)
    return selectors.viewer_key(customer_id=customer.pk) if customer else None


def _not_found() -> JsonResponse:
    return JsonResponse({"error": {"code": "not_found", "message": _("This file does not exist.")}}, status=404)


@require_GET
def attachment_open(request: HttpRequest, attachment_id: int, variant: str = "file") -> HttpResponse:
    viewer = _viewer(request)
    if viewer is None:
        return _not_found()
    try:
        attachment = selectors.attachment_for_viewer(attachment_id=attachment_id, viewer=viewer)
    except AttachmentError as error:
        return _error(error)
    if attachment.removed_at is not None:
        return _error(AttachmentError(AttachmentErrorCode.EXPIRED, _("This file has expired.")))
    if variant == "thumbnail" and not attachment.thumbnail_path:
        return _not_found()
    grant = FileGrant(request.tenant.schema_name, attachment.pk, variant, viewer)  # type: ignore[attr-defined]
    response = HttpResponse(status=302)
    response["Location"] = signed_url(grant)
    response["Cache-Control"] = "private, no-store"  # the signed URL it points to expires
    return response


@require_GET
def attachment_signed(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        grant = grant_from_token(token)
    except GrantRefused as refused:
        if refused.reason == "expired":
            return JsonResponse(
                {"error": {"code": "link_expired", "message": _("This link has expired. Open the file again.")}},
                status=403,
            )
        return _not_found()
    # A token of another business (its host), or made for someone else, opens nothing here.
    if grant.schema_name != request.tenant.schema_name or grant.viewer != _viewer(request):  # type: ignore[attr-defined]
        return _not_found()
    try:
        attachment = selectors.attachment_for_viewer(attachment_id=grant.attachment_id, viewer=grant.viewer)
    except AttachmentError as error:
        return _error(error)
    if attachment.removed_at is not None:
        return _error(AttachmentError(AttachmentErrorCode.EXPIRED, _("This file has expired.")))
    thumbnail = grant.variant == "thumbnail"
    path = attachment.thumbnail_path if thumbnail else attachment.path
    content_type = "image/webp" if thumbnail else attachment.content_type
    inline = content_type in INLINE_TYPES or attachment.kind == "audio"
    response = FileResponse(
        attachment_storage().open(path, "rb"),
        content_type=content_type,
        as_attachment=not inline,
        filename=attachment.name,
    )
    response["Cache-Control"] = f"private, max-age={url_seconds()}"
    # Even a file that slipped past the checks cannot run script in this origin.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_POST
@member_required(manage=True)
def retention(request: HttpRequest) -> HttpResponse:
    """The privacy page's attachment-retention form (owners and admins)."""
    try:
        services.retention_set(business=request.tenant, user=request.user, days=request.POST.get("days"))  # type: ignore[attr-defined, arg-type]
    except AttachmentError as error:
        flash.error(request, error.message)
    else:
        flash.success(request, _("Retention saved."))
    return redirect("privacy")
