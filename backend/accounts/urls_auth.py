"""Sign-in, sign-out, two-factor and "my account" pages (backend/accounts/views_auth.py)."""

from django.urls import path
from django.views.generic import RedirectView

from . import views_auth as views

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/code/", views.login_code, name="login-code"),
    path("login/sso/", views.sso_start, name="oidc-start"),
    path("login/sso/callback/", views.sso_callback, name="oidc-callback"),
    path("logout/", views.logout_view, name="logout"),
    path("logout/everywhere/", views.logout_everywhere, name="logout-everywhere"),
    path("account/", views.account, name="account"),
    path("account/password/", views.password_change, name="account-password"),
    path("account/two-factor/", views.two_factor, name="account-two-factor"),
    path(
        "account/two-factor/disable/",
        views.two_factor_disable,
        name="account-two-factor-disable",
    ),
    path("account/sessions/<int:session_id>/end/", views.session_end, name="account-session-end"),
    path("account/tokens/", views.token_create, name="account-token-create"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="account-token-revoke"),
    # Django admin's own sign-in, sign-out and password pages would bypass throttling,
    # two-factor and the audit log: these come first (backend/urls.py includes this module
    # before admin/), so they send users to ours.
    path("admin/login/", views.admin_login),
    path("admin/logout/", views.logout_view),
    path("admin/password_change/", RedirectView.as_view(url="/account/")),
]
