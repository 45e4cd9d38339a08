from django.urls import path

from customers import business_views

urlpatterns = [
    path("privacy/", business_views.privacy_page, name="privacy"),
    path("privacy/consents.csv", business_views.consents_csv, name="privacy_consents_csv"),
    path("privacy/contacts/<int:contact_id>/export/", business_views.contact_export, name="privacy_contact_export"),
    path("privacy/requests/<str:request_id>/", business_views.privacy_request, name="privacy_request"),
    path("privacy/download/<str:token>/", business_views.privacy_download, name="privacy_download"),
    path("chat/consent/", business_views.chat_consent, name="chat_consent"),
    path("chat/unblock/", business_views.chat_unblock, name="chat_unblock"),
]
