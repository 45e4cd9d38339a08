from django.urls import path

from messaging.api import views

urlpatterns = [
    path("messages", views.MessageSendView.as_view(), name="api_message_send"),
    path("messages/batch", views.MessageBatchView.as_view(), name="api_message_batch"),
    path("messages/<int:notification_id>", views.MessageDetailView.as_view(), name="api_message_detail"),
    path("templates", views.TemplateListView.as_view(), name="api_templates"),
    path("conversations", views.ConversationListView.as_view(), name="api_conversations"),
    path(
        "conversations/<int:conversation_id>/messages",
        views.ConversationMessagesView.as_view(),
        name="api_conversation_messages",
    ),
    path("events", views.EventListView.as_view(), name="api_events"),
]
