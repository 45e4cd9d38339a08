from django.urls import path

from customers import views

urlpatterns = [
    path("me/", views.me, name="me"),
    path("me/code/", views.me_code, name="me_code"),
    path("me/sign-out/", views.me_sign_out, name="me_sign_out"),
    path("me/businesses/<int:business_id>/block/", views.me_block, name="me_block"),
    path("me/businesses/<int:business_id>/unblock/", views.me_unblock, name="me_unblock"),
    path("me/businesses/<int:business_id>/mute/", views.me_mute, name="me_mute"),
    path("me/businesses/<int:business_id>/unmute/", views.me_unmute, name="me_unmute"),
    path("me/businesses/<int:business_id>/report/", views.me_report, name="me_report"),
]
