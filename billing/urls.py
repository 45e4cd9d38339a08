from django.urls import path

from billing import views

urlpatterns = [
    path("billing/", views.billing, name="billing"),
    path("billing/usage.csv", views.usage_csv, name="billing_usage_csv"),
    path("billing/checkout/", views.checkout, name="billing_checkout"),
    path("billing/portal/", views.portal, name="billing_portal"),
]
