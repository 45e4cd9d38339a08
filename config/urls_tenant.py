"""URLs on a business's host: <slug>.parley.localhost."""

from django.conf import settings
from django.conf.urls.static import static
from django.urls import include, path

from accounts import views as account_views
from config import views as config_views
from tenancy import views as tenancy_views

urlpatterns = [
    path("", tenancy_views.tenant_root, name="dashboard"),
    path("overview/live/", tenancy_views.dashboard_live, name="dashboard_live"),
    path("favicon.ico", config_views.favicon),
    # Business logos, on every host: the pages that show one use a same-origin path.
    path("logos/<slug:schema>/<str:filename>", tenancy_views.business_logo, name="business_logo"),
    path("team/", account_views.team, name="team"),
    path("team/<int:membership_id>/remove/", account_views.seat_remove_view, name="seat_remove"),
    path("join/<str:key>/", account_views.join, name="join"),
    path("", include("messaging.urls")),
    path("", include("attachments.urls")),
    path("", include("assignment.urls")),
    path("", include("collab.urls")),
    path("", include("insights.urls")),
    path("", include("notifications.urls")),
    path("api/v1/", include("messaging.api.urls")),
    path("", include("verification.urls")),
    path("", include("billing.urls")),
    path("", include("customers.urls_tenant")),
    # allauth is mounted on every host so the MFA pages and logout work where the user is.
    path("accounts/profile/", account_views.profile, name="account_profile"),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
