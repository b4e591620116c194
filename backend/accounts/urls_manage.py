"""Admins' pages and their JSON API: users, groups, shares, tokens, audit (mounted at
/manage/). Every route is for administrators except invite/<token>, whose link is the
credential; links to it are built with reverse("manage-invite"), so it may move."""

from django.urls import path

from . import manage_views as views

urlpatterns = [
    path("", views.manage_root, name="manage"),
    path("users", views.manage_page, {"name": "users"}, name="manage-users"),
    path("groups", views.manage_page, {"name": "groups"}, name="manage-groups"),
    path("shares", views.manage_page, {"name": "shares"}, name="manage-shares"),
    path("audit", views.manage_page, {"name": "audit"}, name="manage-audit"),
    path("api/users", views.users, name="manage-api-users"),
    path("api/users/<int:user_id>", views.user_detail, name="manage-api-user"),
    path("api/users/<int:user_id>/deactivate", views.user_deactivate),
    path("api/users/<int:user_id>/reactivate", views.user_reactivate),
    path("api/users/<int:user_id>/invite", views.user_invite),
    path("api/users/<int:user_id>/reset-password", views.user_reset_password),
    path("api/users/<int:user_id>/unlock", views.user_unlock),
    path("api/users/<int:user_id>/reset-two-factor", views.user_reset_two_factor),
    path("api/users/<int:user_id>/end-sessions", views.user_end_sessions),
    path("api/tokens/<int:token_id>/revoke", views.token_revoke),
    path("api/groups", views.groups, name="manage-api-groups"),
    path("api/groups/<int:group_id>", views.group_detail),
    path("api/groups/<int:group_id>/delete", views.group_delete),
    path("api/groups/<int:group_id>/members/add", views.group_member_add),
    path("api/groups/<int:group_id>/members/remove", views.group_member_remove),
    path("api/groups/<int:group_id>/rules", views.group_rules),
    path("api/rules/<int:rule_id>/delete", views.rule_delete),
    path("api/shares", views.shares, name="manage-api-shares"),
    path("api/shares/<int:share_id>/revoke", views.share_revoke),
    path("api/studies", views.studies, name="manage-api-studies"),
    path("api/audit", views.audit_events, name="manage-api-audit"),
    path("api/audit/event-types", views.audit_event_types),
    path("api/audit.csv", views.audit_csv, name="manage-api-audit-csv"),
    path("invite/<str:token>", views.invite_page, name="manage-invite"),
    path("invite/<str:token>/account", views.invite_account, name="manage-invite-account"),
]
