from django.urls import path

from attachments import views

urlpatterns = [
    path("chat/attachments/", views.chat_upload, name="chat_attachment_upload"),
    path("inbox/api/attachments/", views.inbox_upload, name="inbox_attachment_upload"),
    path("attachments/<int:attachment_id>/", views.attachment_open, name="attachment_open"),
    path(
        "attachments/<int:attachment_id>/thumbnail/",
        views.attachment_open,
        {"variant": "thumbnail"},
        name="attachment_thumbnail",
    ),
    path("attachments/retention/", views.retention, name="attachment_retention"),
    path("attachments/f/<str:token>/", views.attachment_signed, name="attachment_signed"),
]
