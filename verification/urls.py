from django.urls import path

from verification import views

urlpatterns = [
    path("verification/", views.verification, name="verification"),
    path("verification/phone/", views.phone_start, name="verification_phone"),
    path("verification/phone/confirm/", views.phone_confirm, name="verification_phone_confirm"),
    path("verification/profile/", views.profile_save, name="verification_profile"),
    path("verification/badge/", views.badge_apply, name="verification_badge"),
    path(
        "verification/notices/<int:notice_id>/dismiss/", views.notice_dismiss_view, name="verification_notice_dismiss"
    ),
]
