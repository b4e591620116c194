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
