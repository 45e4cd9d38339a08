from django.urls import path

from insights import views

urlpatterns = [
    path("reports/", views.reports, name="reports"),
    path("inbox/api/sla/", views.SlaView.as_view(), name="insights_sla"),
    path("chat/csat/", views.CsatView.as_view(), name="chat_csat"),
]
