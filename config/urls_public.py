"""URLs on the platform's own host: parley.localhost."""

from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from accounts.admin_access import require_two_factor
from config import views as config_views
from tenancy import views as tenancy_views

admin.site.site_header = "Parley platform"
admin.site.site_title = "Parley admin"
admin.site.index_title = "Platform administration"
# The admin's own login form would skip two-factor authentication and allauth's rate limits:
# send it to allauth's login (which then asks for the TOTP code) and come back.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
# And only with two-factor authentication: a staff member without it is sent to set it up.
require_two_factor(admin.site)

urlpatterns = [
    path("", config_views.landing, name="landing"),
    path("favicon.ico", config_views.favicon),
    # Business logos, on every host: the pages that show one use a same-origin path.
    path("logos/<slug:schema>/<str:filename>", tenancy_views.business_logo, name="business_logo"),
    path("home/", tenancy_views.home, name="home"),
    path("start/", tenancy_views.business_create_view, name="business_create"),
    path("", include("billing.urls_public")),
    path("", include("directory.urls")),
    path("", include("customers.urls")),
    path("", include("verification.urls_public")),
    path("admin/", admin.site.urls),
    path("dev/mailbox/", account_views.mailbox, name="dev_mailbox"),
    path("accounts/profile/", account_views.profile, name="account_profile"),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
