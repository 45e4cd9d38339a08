from django.urls import path

from messaging import views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/api/conversations/", views.InboxConversationsView.as_view(), name="inbox_conversations"),
    path(
        "inbox/api/conversations/<int:conversation_id>/messages/",
        views.InboxMessagesView.as_view(),
        name="inbox_messages",
    ),
    path("inbox/api/counts/", views.InboxCountsView.as_view(), name="inbox_counts"),
    path("contacts/", views.contacts, name="contacts"),
    path("chat/", views.chat, name="chat"),
    path("chat/messages/", views.ChatMessagesView.as_view(), name="chat_messages"),
]
