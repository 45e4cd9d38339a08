from django.urls import path

from messaging import inbox_api, views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/api/conversations/", views.inbox_conversations, name="inbox_conversations"),
    path("inbox/api/conversations/<int:conversation_id>/messages/", views.inbox_messages, name="inbox_messages"),
    path("inbox/api/list/", inbox_api.ConversationListView.as_view(), name="inbox_list"),
    path("inbox/api/counts/", inbox_api.InboxCountsView.as_view(), name="inbox_counts"),
    path("contacts/", views.contacts, name="contacts"),
    path("chat/", views.chat, name="chat"),
    path("chat/messages/", views.chat_messages, name="chat_messages"),
]
