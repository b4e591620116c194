from django.db import models


class OutboxEvent(models.Model):
    """An event on its way to web processes when no Redis channel layer is configured.

    Workers insert rows after their transaction commits; each web process relays rows past
    its own cursor to its in-memory channel layer. Rows are pruned by age.
    """

    group = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.group} #{self.pk}"


class Annotation(models.Model):
    """A measurement or annotation a reader made on an image, kept per user and study."""

    class Kind(models.TextChoices):
        LENGTH = "length"
        ANGLE = "angle"
        RECTANGLE = "rectangle"
        ELLIPSE = "ellipse"
        POINT = "point"

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="annotations")
    study = models.ForeignKey("archive.Study", on_delete=models.CASCADE, related_name="annotations")
    sop_instance_uid = models.CharField(max_length=64)
    frame = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Image coordinates (column, row) of the points that define it.
    points = models.JSONField()
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["user", "study"], name="annotation_owner")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.sop_instance_uid}"
