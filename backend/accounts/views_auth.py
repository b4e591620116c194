"""Sign-in, sign-out, two-factor and "my account" pages. Thin: parse, call one service
(signin.py, twofactor.py, oidc.py), answer."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import oidc, signin, throttle, twofactor
from .forms import CodeForm, LoginForm, TokenForm
from .models import ApiToken
from .sessions import active_sessions

# One message for a wrong password, an unknown user and a locked account.
FAILED = (
    "Wrong username or password, or too many failed attempts. "
    "Check them and try again, or wait {minutes} minutes."
)
THROTTLED = "Too many failed sign-ins from your address. Try again in {minutes} minutes."
WRONG_CODE = "That code is not right, or was already used. Enter the current one."


def _failure(outcome: str) -> tuple[str, int]:
    if outcome == throttle.THROTTLED:
        return THROTTLED.format(minutes=settings.LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES), 429
    return FAILED.format(minutes=settings.LIGHTBOX_LOCKOUT_MINUTES), 200


def _next(request) -> str:
    """The page to go to after signing in: a local URL only (no open redirect)."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return settings.LOGIN_REDIRECT_URL


def _login_page(request, form, next_url: str, status: int = 200, error: str = ""):
    context = {"form": form, "next": next_url, "sso_name": None, "error": error}
    if oidc.enabled():
        context["sso_name"] = settings.LIGHTBOX_OIDC_NAME
    return render(request, "registration/login.html", context, status=status)


@never_cache
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def login_view(request):
    next_url, form = _next(request), LoginForm(request.POST or None)
    status = 200
    if form.is_valid():
        data = form.cleaned_data
        outcome = signin.password_step(request, data["username"], data["password"], next_url)
        if outcome == signin.SIGNED_IN:
            return HttpResponseRedirect(next_url)
        if outcome == signin.CODE_NEEDED:
            return redirect("login-code")
        message, status = _failure(outcome)
        form.add_error(None, message)
    return _login_page(request, form, next_url, status)


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def login_code(request):
    """The second step: a code from the authenticator app."""
    if signin.pending_user(request) is None:
        messages.info(request, "Sign in with your password first (or again: it took too long).")
        return redirect("login")
    next_url, form = signin.pending_next(request), CodeForm(request.POST or None)
    status = 200
    if form.is_valid():
        outcome = signin.code_step(request, form.cleaned_data["code"])
        if outcome == signin.SIGNED_IN:
            return HttpResponseRedirect(next_url)
        if outcome in (signin.EXPIRED, throttle.LOCKED):
            messages.error(request, _failure(throttle.LOCKED)[0])
            return redirect("login")
        message, status = _failure(outcome) if outcome == throttle.THROTTLED else (WRONG_CODE, 200)
        form.add_error(None, message)
    return render(request, "accounts/auth_code.html", {"form": form}, status=status)


@never_cache
@require_GET
def sso_start(request):
    if not oidc.enabled():
        raise Http404("single sign-on is not configured")
    try:
        return HttpResponseRedirect(oidc.start(request, _next(request)))
    except oidc.OidcError:
        error = "Single sign-on is not reachable right now. Try again later."
        return _login_page(request, LoginForm(), _next(request), 503, error)


@never_cache
@require_GET
def sso_callback(request):
    if not oidc.enabled():
        raise Http404("single sign-on is not configured")
    next_url = signin.sso_sign_in(request)
    if next_url is None:
        error = "Single sign-on did not succeed. Try again, or ask an admin."
        return _login_page(request, LoginForm(), settings.LOGIN_REDIRECT_URL, 400, error)
    return HttpResponseRedirect(next_url)


def admin_login(request):
    """Django admin's own sign-in page would skip throttling and two-factor."""
    next_url = _next(request) if "next" in request.GET else "/admin/"
    return HttpResponseRedirect(f"{settings.LOGIN_URL}?{urlencode({'next': next_url})}")


@require_POST
def logout_view(request):
    signin.logout_user(request)
    return HttpResponseRedirect(settings.LOGOUT_REDIRECT_URL)


@login_required
@require_POST
def logout_everywhere(request):
    count = signin.end_all_sessions(request)
    messages.success(request, f"Signed out everywhere ({count} sessions).")
    return HttpResponseRedirect(settings.LOGOUT_REDIRECT_URL)


# My account


def _account_page(request, status: int = 200, **forms):
    user = request.user
    context = {
        "two_factor_on": twofactor.is_enabled(user),
        "two_factor_required": twofactor.is_required(user),
        "sessions": active_sessions(user),
        "tokens": ApiToken.objects.filter(user=user),
        "password_form": forms.get("password_form") or PasswordChangeForm(user),
        "token_form": forms.get("token_form") or TokenForm(initial={"scopes": ["read"]}),
    }
    return render(request, "accounts/account.html", context, status=status)


@never_cache
@login_required
@require_GET
def account(request):
    return _account_page(request)


@never_cache
@login_required
@sensitive_post_parameters()
@require_POST
def password_change(request):
    form = PasswordChangeForm(request.user, request.POST)
    if throttle.is_locked(request.user):
        form.add_error(None, "Too many failed attempts. Try again later.")
    elif form.is_valid():
        signin.change_password(request, form)
        messages.success(request, "Password changed. Your other sessions were ended.")
        return redirect("account")
    else:
        wrong_old = form.has_error("old_password", "password_incorrect")
        signin.password_change_refused(request, "password_incorrect" if wrong_old else "invalid")
    return _account_page(request, 400, password_form=form)


@never_cache
@login_required
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def two_factor(request):
    """Two-factor status, and setting it up: the secret as a QR code, confirmed by a code."""
    user, form = request.user, CodeForm(request.POST or None)
    if twofactor.is_enabled(user):
        return render(request, "accounts/account_two_factor.html", {"enabled": True})
    if form.is_valid():
        if signin.enrol_two_factor(request, form.cleaned_data["code"]):
            messages.success(request, "Two-factor sign-in is on.")
            return redirect("account")
        form.add_error("code", WRONG_CODE)
    secret = twofactor.pending_secret(user)
    uri = twofactor.provisioning_uri(user.get_username(), secret)
    context = {
        "form": form,
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "uri": uri,
        "qr": mark_safe(twofactor.qr_svg(uri)),  # noqa: S308 - our own SVG: paths only
        "required": twofactor.is_required(user),
    }
    status = 400 if form.is_bound else 200
    return render(request, "accounts/account_two_factor.html", context, status=status)


@never_cache
@login_required
@sensitive_post_parameters("code")
@require_POST
def two_factor_disable(request):
    form = CodeForm(request.POST)
    if form.is_valid() and signin.disable_two_factor(request, form.cleaned_data["code"]):
        messages.success(request, "Two-factor sign-in is off.")
        return redirect("account")
    messages.error(request, WRONG_CODE)
    return redirect("account-two-factor")


@login_required
@require_POST
def session_end(request, session_id: int):
    if not signin.end_one_session(request, session_id):
        raise Http404("no such session")
    if not request.user.is_authenticated:
        return HttpResponseRedirect(settings.LOGOUT_REDIRECT_URL)  # it was this one
    messages.success(request, "Session ended.")
    return redirect("account")


@never_cache
@login_required
@require_POST
def token_create(request):
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _account_page(request, 400, token_form=form)
    row, text = signin.new_token(request, form.cleaned_data["name"], form.cleaned_data["scopes"])
    # Shown once; never_cache also says no-store, so not even the back button keeps it.
    return render(request, "accounts/account_token.html", {"token": row, "text": text})


@login_required
@require_POST
def token_revoke(request, token_id: int):
    if not signin.revoke_own_token(request, token_id):
        raise Http404("no such active token")
    messages.success(request, "Token revoked.")
    return redirect("account")
