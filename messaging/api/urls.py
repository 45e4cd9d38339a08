from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from messaging.api import schema as _schema  # noqa: F401  (registers the key scheme)
from messaging.api import views

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
        SpectacularSwaggerSplitView.as_view(
            url_name="api_schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="api_docs",
    ),
    # Last: every other path under /api/v1/ answers as the API does, in problem+json.
    re_path(r"^.*$", views.NotFoundView.as_view(), name="api_not_found"),
]
