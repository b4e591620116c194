"""The audit log: an append-only record of who touched what (Security baseline, DESIGN.md).

Rows map to the DICOM audit messages of PS3.15 §A.5.3 (Association, Query, Instances
Transferred, Security Alert); the accounts work will add the export. Nothing in Lightbox
changes or deletes a row: save() refuses updates, delete() and bulk changes raise.
"""

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    """An attempt to change or delete an audit row."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be changed")

    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Dotted, source first: dicom.association, dicom.echo, dicom.store, dicom.find,
    # dicom.rejected, ...
    event_type = models.CharField(max_length=64, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    calling_ae = models.CharField(max_length=16, blank=True, db_index=True)
    called_ae = models.CharField(max_length=16, blank=True)
    peer_address = models.CharField(max_length=64, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True, db_index=True)
    patient_id = models.CharField(max_length=64, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.event_type} {self.outcome}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class ApiToken(models.Model):
    """A named, revocable credential for DICOMweb clients and scripts (Authorization: Bearer).

    Only a SHA-256 digest of the token is kept: the token itself is shown once, when made.
    A token is 32 random bytes, so a fast hash is enough (no password stretching needed).
    """

    class Scope(models.TextChoices):
        READ = "read"  # QIDO-RS, WADO-RS, WADO-URI
        WRITE = "write"  # STOW-RS

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)  # the first characters, to tell tokens apart
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Role(models.TextChoices):
    """What a user may do and see (backend/archive/access.py applies it)."""

    ADMIN = "admin", "Administrator"  # manages users, groups, nodes, audit; sees all
    RADIOLOGIST = "radiologist", "Radiologist"  # every study of their groups
    REFERRING = "referring", "Referring physician"  # shared with them, or their patients' studies
    UPLOADER = "uploader", "Technologist / uploader"  # sends and uploads; sees what they sent


class Profile(models.Model):
    """Lightbox's part of a user: role, identity for the referring role, sign-in security."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.RADIOLOGIST)
    # Referring role: studies whose ReferringPhysicianName matches this name (PN, e.g.
    # SMITH^JOHN; compared case- and accent-insensitively), or whose AccessionNumber starts
    # with this prefix.
    referring_name = models.CharField(max_length=200, blank=True)
    referring_accession_prefix = models.CharField(max_length=64, blank=True)
    # Two-factor authentication (TOTP, RFC 6238).
    totp_secret = models.CharField(max_length=64, blank=True)
    totp_confirmed_at = models.DateTimeField(null=True, blank=True)
    totp_last_step = models.BigIntegerField(default=0)  # a code is accepted once
    require_two_factor = models.BooleanField(default=False)
    # Lockout after repeated failures.
    failed_logins = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    password_changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class AccessGroup(models.Model):
    """A set of studies defined by rules (and explicit shares), and the users who read them."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="access_groups", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GroupRule(models.Model):
    """One rule of a group: studies whose attribute matches the pattern (`*` and `?`
    wildcards, case-insensitive for names). A group's studies are those matching any rule."""

    class Attribute(models.TextChoices):
        ALL = "all", "Every study"
        INSTITUTION = "institution", "Institution name"
        CALLING_AE = "calling_ae", "Sent by calling AE title"
        MODALITY = "modality", "Modality"
        REFERRING = "referring", "Referring physician name"

    group = models.ForeignKey(AccessGroup, on_delete=models.CASCADE, related_name="rules")
    attribute = models.CharField(max_length=16, choices=Attribute.choices)
    pattern = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.group}: {self.attribute} = {self.pattern}"


class StudyShare(models.Model):
    """A study shared explicitly with one user or one group, optionally until a date."""

    study = models.ForeignKey("archive.Study", on_delete=models.CASCADE, related_name="shares")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="study_shares",
    )
    group = models.ForeignKey(
        AccessGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="shares"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="share_with_user_or_group",
            )
        ]

    def __str__(self) -> str:
        return f"{self.study_id} → {self.user or self.group}"


class UserSession(models.Model):
    """A signed-in browser session, so users and admins can see and end them."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="browser_sessions"
    )
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    address = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.user} from {self.address}"


class FailedLogin(models.Model):
    """A failed sign-in, for throttling by account and by address."""

    username = models.CharField(max_length=150, db_index=True)
    address = models.CharField(max_length=64, db_index=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.username} from {self.address} at {self.at}"


class Invitation(models.Model):
    """A one-time link by which a new user sets their password."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations"
    )
    digest = models.CharField(max_length=64, unique=True)  # SHA-256 of the link's token
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"invitation of {self.user}"


class ExternalIdentity(models.Model):
    """A person known to an OpenID Connect provider (issuer + subject, OIDC Core §2), linked
    to the Lightbox user they sign in as. The subject, never a name or an e-mail address,
    identifies them: names can change or be reused, subjects cannot."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_subject")
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.issuer}"
