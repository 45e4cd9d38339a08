from django.urls import path

from directory import views

urlpatterns = [
    path("businesses/", views.businesses, name="businesses"),
    path("me/conversations/", views.me_conversations, name="me_conversations"),
]
