from django.urls import path

from verification import views

urlpatterns = [
    path("verification/", views.verification, name="verification"),
]
