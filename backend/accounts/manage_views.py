"""The /manage pages (static HTML driven by frontend/js/manage) and their JSON API under
/manage/api: thin — parse, call a check_* and a do_* of the manage package, answer.

Administrators only: a visitor without a session is sent to the login form (pages) or gets
401 (API), anyone else 403. POSTs carry the CSRF token (X-CSRFToken) like every
session-authenticated request. The invitation page is the one public exception: its link is
the credential.
"""

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import IntegrityError
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from backend.archive.access import is_admin
from backend.archive.models import Study

from . import invitations, manage, signin, twofactor
from .manage.common import Actor, ManageError
from .models import AccessGroup, ApiToken, AuditEvent, Invitation, StudyShare, UserSession
from .sessions import active_sessions, client_address

PAGES = settings.BASE_DIR / "frontend" / "manage"


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _actor(request: HttpRequest) -> Actor:
    assert isinstance(request.user, User)
    return Actor(request.user, client_address(request))


def _body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ManageError("the body must be a JSON object") from None
    except RequestDataTooBig:
        raise ManageError("the body is too large") from None
    if not isinstance(body, dict):
        raise ManageError("the body must be a JSON object")
    return body


def _page(request: HttpRequest, name: str) -> FileResponse:
    get_token(request)  # the page's script sends the CSRF cookie back as a header
    return FileResponse(open(PAGES / f"{name}.html", "rb"), content_type="text/html; charset=utf-8")


def admin_page(view: Callable) -> Callable:
    @wraps(view)
    @require_GET
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_admin(request.user):
            return HttpResponseForbidden("administrators only", content_type="text/plain")
        return view(request, *args, **kwargs)

    return wrapper


def admin_api(*methods: str) -> Callable[[Callable], Callable]:
    """An API view: JSON errors for every refusal, so the pages can show the message."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        @never_cache
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return _error("sign in first", 401)
            if not is_admin(request.user):
                return _error("administrators only", 403)
            if request.method not in methods:
                response = _error(f"use {' or '.join(methods)}", 405)
                response["Allow"] = ", ".join(methods)
                return response
            return _answer(view, request, *args, **kwargs)

        return wrapper

    return decorate


def _answer(view: Callable, request: HttpRequest, *args, **kwargs) -> HttpResponse:
    try:
        return view(request, *args, **kwargs)
    except ManageError as exc:
        return _error(str(exc), exc.status)
    except IntegrityError:  # a concurrent change won a race the checks could not see
        return _error("this conflicts with another change: reload and try again", 409)


# --- Pages -------------------------------------------------------------------------------


@admin_page
def manage_root(request):
    return redirect("manage-users")


@admin_page
def manage_page(request, name: str):
    """One of the static pages (users, groups, shares, audit); urls_manage names it."""
    return _page(request, name)


# --- Users -------------------------------------------------------------------------------


@admin_api("GET", "POST")
def users(request):
    actor = _actor(request)
    if request.method == "GET":
        return JsonResponse({"users": [user_row(u) for u in manage.users.list_users(actor)]})
    new = manage.users.check_create_user(actor, _body(request))
    user, invitation, token = manage.users.do_create_user(actor, new)
    return _with_invitation(request, manage.users.get_user(actor, user.pk), invitation, token, 201)


def _with_invitation(
    request, user: User, invitation: Invitation, token: str, status: int = 200
) -> JsonResponse:
    link = {
        "url": request.build_absolute_uri(invitations.invitation_path(token)),
        "expires_at": invitation.expires_at.isoformat(),
    }
    return JsonResponse({"user": user_row(user), "invitation": link}, status=status)


@admin_api("GET", "POST")
def user_detail(request, user_id: int):
    actor = _actor(request)
    if request.method == "POST":
        user, changes = manage.users.check_change_user(actor, user_id, _body(request))
        manage.users.do_change_user(actor, user, changes)
    return _user_answer(request, manage.users.get_user(actor, user_id))


def _user_answer(request, user: User) -> JsonResponse:
    current = request.session.session_key
    return JsonResponse(
        {
            "user": user_row(user),
            "sessions": [session_row(s, current) for s in active_sessions(user)],
            "tokens": [token_row(t) for t in user.api_tokens.all()],
        }
    )


@admin_api("POST")
def user_deactivate(request, user_id: int):
    actor = _actor(request)
    manage.users.do_deactivate(actor, manage.users.check_deactivate(actor, user_id))
    return _user_answer(request, manage.users.get_user(actor, user_id))


@admin_api("POST")
def user_reactivate(request, user_id: int):
    actor = _actor(request)
    manage.users.do_reactivate(actor, manage.users.check_reactivate(actor, user_id))
    return _user_answer(request, manage.users.get_user(actor, user_id))


@admin_api("POST")
def user_invite(request, user_id: int):
    actor = _actor(request)
    target = manage.users.check_active_user(actor, user_id)
    invitation, token = manage.users.do_invite(actor, target)
    return _with_invitation(request, manage.users.get_user(actor, user_id), invitation, token)


@admin_api("POST")
def user_reset_password(request, user_id: int):
    actor = _actor(request)
    target = manage.users.check_active_user(actor, user_id)
    invitation, token = manage.users.do_reset_password(actor, target)
    return _with_invitation(request, manage.users.get_user(actor, user_id), invitation, token)


@admin_api("POST")
def user_unlock(request, user_id: int):
    actor = _actor(request)
    manage.users.do_unlock(actor, manage.users.get_user(actor, user_id))
    return _user_answer(request, manage.users.get_user(actor, user_id))


@admin_api("POST")
def user_reset_two_factor(request, user_id: int):
    actor = _actor(request)
    manage.users.do_reset_two_factor(actor, manage.users.get_user(actor, user_id))
    return _user_answer(request, manage.users.get_user(actor, user_id))


@admin_api("POST")
def user_end_sessions(request, user_id: int):
    actor = _actor(request)
    target, keys = manage.users.check_end_sessions(actor, user_id, _body(request))
    manage.users.do_end_sessions(actor, target, keys)
    return _user_answer(request, manage.users.get_user(actor, user_id))


@admin_api("POST")
def token_revoke(request, token_id: int):
    actor = _actor(request)
    token = manage.users.check_revoke_token(actor, token_id)
    manage.users.do_revoke_token(actor, token)
    return _user_answer(request, manage.users.get_user(actor, token.user_id))


def user_row(user: User) -> dict:
    """A user as the users table shows them (from manage.users.list_users)."""
    profile = manage.users.profile_of(user)
    pending = getattr(user, "pending_invitations", [])
    return {
        "id": user.pk,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": "admin" if user.is_superuser else profile.role,
        "is_superuser": user.is_superuser,
        "is_active": user.is_active,
        "groups": [{"id": g.pk, "name": g.name} for g in user.access_groups.all()],
        "referring_name": profile.referring_name,
        "referring_accession_prefix": profile.referring_accession_prefix,
        "require_two_factor": profile.require_two_factor,
        "two_factor_enrolled": profile.totp_confirmed_at is not None,
        "last_login": _iso(user.last_login),
        "date_joined": _iso(user.date_joined),
        "active_sessions": getattr(user, "active_sessions", 0),
        "locked_until": _iso(profile.locked_until) if manage.users.is_locked(user) else None,
        "has_password": user.has_usable_password(),
        "invitation_expires_at": _iso(pending[0].expires_at) if pending else None,
    }


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def session_row(row: UserSession, current: str | None) -> dict:
    # The session key is a credential: the page sees the row's id only.
    return {
        "id": row.pk,
        "created_at": _iso(row.created_at),
        "last_seen_at": _iso(row.last_seen_at),
        "address": row.address,
        "user_agent": row.user_agent,
        "current": row.session_key == current,
    }


def token_row(token: ApiToken) -> dict:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "scopes": token.scopes,
        "created_at": _iso(token.created_at),
        "last_used_at": _iso(token.last_used_at),
        "revoked_at": _iso(token.revoked_at),
    }


# --- Groups ------------------------------------------------------------------------------


@admin_api("GET", "POST")
def groups(request):
    actor = _actor(request)
    if request.method == "POST":
        name, description = manage.groups.check_create_group(actor, _body(request))
        group = manage.groups.do_create_group(actor, name, description)
        row = _group_row(manage.groups.get_group(actor, group.pk))
        return JsonResponse({"group": row}, status=201)
    if request.GET.get("brief"):  # names only, for pickers: no member lists, no counting
        return JsonResponse({"groups": manage.groups.group_names(actor)})
    return JsonResponse({"groups": [_group_row(g) for g in manage.groups.list_groups(actor)]})


def _group_row(group: AccessGroup) -> dict:
    rules = list(group.rules.all())
    return {
        "id": group.pk,
        "name": group.name,
        "description": group.description,
        "members": [{"id": u.pk, "username": u.username} for u in group.members.all()],
        "rules": [
            {
                "id": r.pk,
                "attribute": r.attribute,
                "pattern": r.pattern,
                "studies": manage.groups.count_studies([r]),
            }
            for r in rules
        ],
        "studies": manage.groups.count_studies(rules),
    }


def _groups_answer(actor: Actor, group_id: int) -> JsonResponse:
    return JsonResponse({"group": _group_row(manage.groups.list_groups(actor).get(pk=group_id))})


@admin_api("POST")
def group_detail(request, group_id: int):
    actor = _actor(request)
    group, changes = manage.groups.check_change_group(actor, group_id, _body(request))
    manage.groups.do_change_group(actor, group, changes)
    return _groups_answer(actor, group_id)


@admin_api("POST")
def group_delete(request, group_id: int):
    actor = _actor(request)
    manage.groups.do_delete_group(actor, manage.groups.get_group(actor, group_id))
    return JsonResponse({"deleted": group_id})


@admin_api("POST")
def group_member_add(request, group_id: int):
    actor = _actor(request)
    group, user = manage.groups.check_member(actor, group_id, _body(request), joining=True)
    manage.groups.do_add_member(actor, group, user)
    return _groups_answer(actor, group_id)


@admin_api("POST")
def group_member_remove(request, group_id: int):
    actor = _actor(request)
    group, user = manage.groups.check_member(actor, group_id, _body(request), joining=False)
    manage.groups.do_remove_member(actor, group, user)
    return _groups_answer(actor, group_id)


@admin_api("POST")
def group_rules(request, group_id: int):
    actor = _actor(request)
    group, attribute, pattern = manage.groups.check_add_rule(actor, group_id, _body(request))
    manage.groups.do_add_rule(actor, group, attribute, pattern)
    return _groups_answer(actor, group_id)


@admin_api("POST")
def rule_delete(request, rule_id: int):
    actor = _actor(request)
    rule = manage.groups.check_remove_rule(actor, rule_id)
    manage.groups.do_remove_rule(actor, rule)
    return _groups_answer(actor, rule.group_id)


# --- Shares ------------------------------------------------------------------------------


@admin_api("GET", "POST")
def shares(request):
    actor = _actor(request)
    if request.method == "POST":
        new = manage.shares.check_create_share(actor, _body(request))
        share = manage.shares.do_create_share(actor, new)
        return JsonResponse({"share": share_row(share)}, status=201)
    found = manage.shares.list_shares(actor, request.GET)
    return JsonResponse({"shares": [share_row(s) for s in found]})


@admin_api("POST")
def share_revoke(request, share_id: int):
    actor = _actor(request)
    manage.shares.do_revoke_share(actor, manage.shares.check_revoke_share(actor, share_id))
    return JsonResponse({"revoked": share_id})


def share_row(share: StudyShare) -> dict:
    return {
        "id": share.pk,
        "study": study_row(share.study),
        "user": {"id": share.user.pk, "username": share.user.username} if share.user else None,
        "group": {"id": share.group.pk, "name": share.group.name} if share.group else None,
        "expires_at": _iso(share.expires_at),
        "expired": share.expires_at is not None and share.expires_at <= timezone.now(),
        "created_by": share.created_by.username if share.created_by else "",
        "created_at": _iso(share.created_at),
    }


@admin_api("GET")
def studies(request):
    found = manage.shares.search_studies(_actor(request), request.GET)
    return JsonResponse({"studies": [study_row(s) for s in found]})


def study_row(study: Study) -> dict:
    return {
        "study_instance_uid": study.study_instance_uid,
        "patient_name": study.patient.patient_name,
        "patient_id": study.patient.patient_id,
        "study_date": _iso(study.study_date),
        "study_description": study.study_description,
        "accession_number": study.accession_number,
        "modalities_in_study": study.modalities_in_study,
    }


# --- Audit log ---------------------------------------------------------------------------


@admin_api("GET")
def audit_events(request):
    actor = _actor(request)
    audit_filter = manage.audit_log.check_audit_filter(actor, request.GET)
    events, more = manage.audit_log.audit_page(actor, audit_filter, request.GET)
    return JsonResponse({"events": [event_row(e) for e in events], "more": more})


@admin_api("GET")
def audit_event_types(request):
    return JsonResponse({"event_types": manage.audit_log.event_types(_actor(request))})


@admin_api("GET")
def audit_csv(request):
    actor = _actor(request)
    audit_filter = manage.audit_log.check_audit_filter(actor, request.GET)
    chunks, truncated = manage.audit_log.do_export_audit(actor, audit_filter)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="lightbox-audit-{stamp}.csv"'
    response["X-Lightbox-Truncated"] = "1" if truncated else "0"
    return response


def event_row(event: AuditEvent) -> dict:
    return {
        "id": event.pk,
        "time": _iso(event.created_at),
        "event_type": event.event_type,
        "outcome": event.outcome,
        "user": event.user.username if event.user else "",
        "peer_address": event.peer_address,
        "calling_ae": event.calling_ae,
        "called_ae": event.called_ae,
        "study_instance_uid": event.study_instance_uid,
        "patient_id": event.patient_id,
        "detail": event.detail,
    }


# --- Invitation (public: the link is the credential) ---------------------------------------


@never_cache
@require_GET
def invite_page(request, token: str):
    try:
        invitations.find_invitation(token)
    except invitations.InvitationError:
        return _invite_file(request, "invite-expired", 404)
    return _invite_file(request, "invite", 200)


def _invite_file(request, name: str, status: int) -> FileResponse:
    response = _page(request, name)
    response.status_code = status
    return response


@never_cache
def invite_account(request, token: str):
    """GET: whose link this is. POST {"password"}: set it, and sign in unless a second
    factor is due (then the login form asks for it)."""
    if request.method not in ("GET", "POST"):
        return _error("use GET or POST", 405)
    try:
        if request.method == "GET":
            return _invitee(invitations.find_invitation(token))
        return _accept(request, token)
    except invitations.InvitationError as exc:
        if request.method == "POST":
            invitations.record_refused(client_address(request), str(exc))
        return _error(str(exc), 404)
    except ValidationError as exc:
        return _error(" ".join(exc.messages), 400)
    except ManageError as exc:
        return _error(str(exc), exc.status)


def _invitee(invitation: Invitation) -> JsonResponse:
    user = invitation.user
    return JsonResponse(
        {
            "username": user.username,
            "first_name": user.first_name,
            "expires_at": invitation.expires_at.isoformat(),
        }
    )


def _accept(request, token: str) -> JsonResponse:
    password = _body(request).get("password")
    invitation = invitations.check_accept(token, password)
    user = invitations.do_accept(invitation, str(password), client_address(request))
    if twofactor.is_enabled(user):  # a reset link must not stand in for the second factor
        return JsonResponse({"username": user.username, "next": settings.LOGIN_URL})
    signin.complete_login(request, user, "invitation", _password_backend())
    return JsonResponse({"username": user.username, "next": settings.LOGIN_REDIRECT_URL})


def _password_backend() -> str:
    model = "django.contrib.auth.backends.ModelBackend"
    backends = settings.AUTHENTICATION_BACKENDS
    return model if model in backends else backends[0]
