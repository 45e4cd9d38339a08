from django.urls import path

from customers import privacy_views, views

urlpatterns = [
    path("me/", views.me, name="me"),
    path("me/code/", views.me_code, name="me_code"),
    path("me/sign-out/", views.me_sign_out, name="me_sign_out"),
    path("me/businesses/<int:business_id>/block/", views.me_block, name="me_block"),
    path("me/businesses/<int:business_id>/unblock/", views.me_unblock, name="me_unblock"),
    path("me/businesses/<int:business_id>/mute/", views.me_mute, name="me_mute"),
    path("me/businesses/<int:business_id>/unmute/", views.me_unmute, name="me_unmute"),
    path("me/businesses/<int:business_id>/report/", views.me_report, name="me_report"),
    path("me/privacy/", privacy_views.me_privacy, name="me_privacy"),
    path("me/privacy/export/", privacy_views.me_privacy_export, name="me_privacy_export"),
    path("me/privacy/delete/", privacy_views.me_privacy_delete, name="me_privacy_delete"),
    path("me/privacy/requests/<str:request_id>/", privacy_views.me_privacy_request, name="me_privacy_request"),
    path("me/privacy/download/<str:token>/", privacy_views.me_privacy_download, name="me_privacy_download"),
    path(
        "me/privacy/businesses/<int:business_id>/consent/",
        privacy_views.me_privacy_consent,
        name="me_privacy_consent",
    ),
    path("me/privacy/businesses/<int:business_id>/erase/", privacy_views.me_privacy_erase, name="me_privacy_erase"),
]
