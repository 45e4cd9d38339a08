from django.urls import path

from collab import api, views

urlpatterns = [
    path("inbox/setup/", views.inbox_setup, name="inbox_setup"),
    path("inbox/api/collab/", api.InboxSetupView.as_view(), name="collab_setup_api"),
    path("inbox/api/labels/", api.ConversationLabelsView.as_view(), name="collab_conversation_labels"),
    path("inbox/api/macros/<int:macro_id>/apply/", api.MacroApplyView.as_view(), name="collab_macro_apply"),
    path("inbox/api/notifications/", api.NotificationsView.as_view(), name="collab_notifications"),
    path("inbox/api/search/", api.SearchView.as_view(), name="collab_search"),
]
