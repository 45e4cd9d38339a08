from django.urls import path

from notifications import views

urlpatterns = [
    path("templates/", views.templates, name="templates"),
    path("templates/<int:template_id>/", views.template_edit, name="template_edit"),
    path("developers/", views.developers, name="developers"),
    path("inbox/templates/", views.inbox_templates, name="inbox_templates"),
    path("inbox/templates/send/", views.inbox_template_send, name="inbox_template_send"),
    path("developers/keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("developers/webhooks/", views.webhook_create, name="webhook_create"),
    path("developers/webhooks/<int:endpoint_id>/delete/", views.webhook_delete, name="webhook_delete"),
    path("developers/deliveries/<int:delivery_id>/resend/", views.webhook_resend, name="webhook_resend"),
]
