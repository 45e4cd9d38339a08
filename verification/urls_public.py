from django.urls import path

from verification import views

urlpatterns = [
    path("dev/outbox/", views.outbox, name="sms_outbox"),
]
