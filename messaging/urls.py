from django.urls import path

from messaging import views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/api/conversations/", views.inbox_conversations, name="inbox_conversations"),
    path("inbox/api/conversations/<int:conversation_id>/messages/", views.inbox_messages, name="inbox_messages"),
    path("contacts/", views.contacts, name="contacts"),
    path("chat/", views.chat, name="chat"),
    path("chat/messages/", views.chat_messages, name="chat_messages"),
]
