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
