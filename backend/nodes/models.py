"""Remote DICOM application entities that Lightbox knows: who may query, retrieve, or be sent
images (PS3.7 §D.3.1: an AE is named by its AE title and reached at a host and port)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def validate_ae_title(value: str) -> None:
    """PS3.5 §6.2 (AE VR): 1 to 16 characters of the default repertoire, no backslash and no
    control characters; leading and trailing spaces are not significant, so all-space is
    empty."""
    title = value.strip(" ")
    if not title:
        raise ValidationError("AE title must not be empty or all spaces (PS3.5 §6.2)")
    if len(value) > 16:
        raise ValidationError(f"AE title {value!r} is longer than 16 characters (PS3.5 §6.2)")
    bad = sorted({c for c in value if c == "\\" or not " " <= c <= "~"})
    if bad:
        raise ValidationError(
            f"AE title {value!r} has characters not allowed in an AE (PS3.5 §6.2): {bad}"
        )


def validate_host(value: str) -> None:
    if not value or len(value) > 255 or any(c.isspace() or c in "/\\@" for c in value):
        raise ValidationError(f"{value!r} is not a host name or IP address")


class RemoteNode(models.Model):
    ae_title = models.CharField(max_length=16, unique=True, validators=[validate_ae_title])
    host = models.CharField(
        max_length=255, validators=[validate_host], help_text="Host name or IP address."
    )
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    name = models.CharField(max_length=100, blank=True)
    can_query = models.BooleanField(default=True, help_text="May send C-FIND to Lightbox.")
    can_retrieve = models.BooleanField(
        default=True, help_text="May ask Lightbox for images (C-MOVE, C-GET)."
    )
    can_store_to = models.BooleanField(
        default=True, help_text="Lightbox may send images to it (a C-MOVE destination)."
    )
    # What the node may query and retrieve (C-FIND, C-MOVE, C-GET): the studies of this
    # access group (its rules and its shares) or, when empty, every study.
    access_group = models.ForeignKey(
        "accounts.AccessGroup",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="nodes",
        help_text="Limit its queries and retrieves to this group's studies; empty: every study.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "remote DICOM node"

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def save(self, *args, **kwargs):
        # AE titles compare without their padding (PS3.5 §6.2).
        self.ae_title = self.ae_title.strip(" ")
        super().save(*args, **kwargs)


class RemoteJob(models.Model):
    """One request Lightbox makes of a remote node (C-ECHO, C-FIND, C-MOVE/C-GET, C-STORE),
    run by a worker (backend/nodes/jobs.py). A row with a state: the task takes its id."""

    class Kind(models.TextChoices):
        ECHO = "echo"
        FIND = "find"
        RETRIEVE = "retrieve"
        SEND = "send"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    node = models.ForeignKey(RemoteNode, on_delete=models.CASCADE, related_name="jobs")
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED, db_index=True
    )
    # find: level and keys; retrieve: study/series UID and method; send: study/series UID.
    parameters = models.JSONField(default=dict, blank=True)
    # Sub-operations so far (PS3.4 C.4.2.1.5: completed, failed, remaining).
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    remaining = models.PositiveIntegerField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Heartbeat: a running job whose row has not moved for a while is taken as abandoned.
    updated_at = models.DateTimeField(auto_now=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} on {self.node.ae_title}: {self.state}"
