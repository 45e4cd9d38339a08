"""URLs on the platform's own host: parley.localhost."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from config import views as config_views
from tenancy import views as tenancy_views

admin.site.site_header = "Parley platform"
admin.site.site_title = "Parley admin"
admin.site.index_title = "Platform administration"

urlpatterns = [
    path("", config_views.landing, name="landing"),
    path("home/", tenancy_views.home, name="home"),
    path("start/", tenancy_views.business_create_view, name="business_create"),
    path("", include("billing.urls_public")),
    path("", include("directory.urls")),
    path("", include("customers.urls")),
    path("", include("verification.urls_public")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
