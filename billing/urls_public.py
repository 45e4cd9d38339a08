from django.urls import path

from billing import views

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    # Stripe posts here; the address goes into the Stripe dashboard's webhook endpoint.
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
