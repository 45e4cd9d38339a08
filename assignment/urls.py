from django.urls import path

from assignment import views

urlpatterns = [
    path("inbox/settings/", views.settings_page, name="assignment_settings"),
    path("chat/queue/", views.chat_queue, name="chat_queue"),
]
