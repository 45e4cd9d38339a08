from django.urls import path

from messaging import views

urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("contacts/", views.contacts, name="contacts"),
    path("templates/", views.templates, name="templates"),
    path("developers/", views.developers, name="developers"),
    path("chat/", views.chat, name="chat"),
]
