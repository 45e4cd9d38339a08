from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http.response import HttpResponseBase
from django.urls import path, re_path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override, csp_report_only_override
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from messaging.api import schema as _schema  # noqa: F401  (registers the key scheme)
from messaging.api import views


def _docs_view() -> Callable[..., HttpResponseBase]:
    """Swagger UI (vendored): its own script sets styles inline, which the site's policy (no
    inline style) blocked. Here only, inline styles are allowed: the page holds no business data
    and its scripts stay as strict as everywhere."""
    view = SpectacularSwaggerSplitView.as_view(
        url_name="api_schema", authentication_classes=[], permission_classes=[AllowAny]
    )
    policy: dict[str, Any] = settings.PARLEY_CSP_POLICY
    with_inline_styles: dict[str, Any] = {
        **policy,
        "style-src": [src for src in policy["style-src"] if src != CSP.NONCE] + [CSP.UNSAFE_INLINE],
    }
    if settings.SECURE_CSP:
        view = csp_override(with_inline_styles)(view)
    if settings.SECURE_CSP_REPORT_ONLY:
        view = csp_report_only_override(with_inline_styles)(view)
    return view


urlpatterns = [
    path("messages", views.MessageSendView.as_view(), name="api_message_send"),
    path("messages/batch", views.MessageBatchView.as_view(), name="api_message_batch"),
    path("media", views.MediaUploadView.as_view(), name="api_media_upload"),
    path("messages/<int:notification_id>", views.MessageDetailView.as_view(), name="api_message_detail"),
    path("templates", views.TemplateListView.as_view(), name="api_templates"),
    path("consents", views.ConsentView.as_view(), name="api_consents"),
    path("conversations", views.ConversationListView.as_view(), name="api_conversations"),
    path(
        "conversations/<int:conversation_id>/messages",
        views.ConversationMessagesView.as_view(),
        name="api_conversation_messages",
    ),
    path("events", views.EventListView.as_view(), name="api_events"),
    # The schema and the docs are public: they describe the API, they hold no business data.
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api_schema",
    ),
    path(
        "docs/",
        _docs_view(),
        name="api_docs",
    ),
    # Last: every other path under /api/v1/ answers as the API does, in problem+json.
    re_path(r"^.*$", views.NotFoundView.as_view(), name="api_not_found"),
]
