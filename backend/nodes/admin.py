from django.contrib import admin, messages

from . import jobs
from .models import RemoteJob, RemoteNode


@admin.register(RemoteNode)
class RemoteNodeAdmin(admin.ModelAdmin):
    list_display = (
        "ae_title",
        "host",
        "port",
        "name",
        "can_query",
        "can_retrieve",
        "can_store_to",
        "access_group",
        "created_at",
    )
    list_filter = ("can_query", "can_retrieve", "can_store_to", "access_group")
    list_select_related = ("access_group",)
    fields = (
        "ae_title",
        "host",
        "port",
        "name",
        "can_query",
        "can_retrieve",
        "can_store_to",
        "access_group",
    )
    search_fields = ("ae_title", "host", "name")
    actions = ["test_connection"]

    @admin.action(description="Test connection (C-ECHO)")
    def test_connection(self, request, queryset):
        started = [jobs.start_echo(node, request.user) for node in queryset]
        ids = ", ".join(str(job.pk) for job in started)
        self.message_user(
            request, f"C-ECHO queued: see Remote jobs {ids} for the result.", messages.INFO
        )


@admin.register(RemoteJob)
class RemoteJobAdmin(admin.ModelAdmin):
    """Read-only: jobs are started from the node actions and the API."""

    list_display = (
        "id",
        "kind",
        "node",
        "state",
        "completed",
        "failed",
        "remaining",
        "attempts",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("state", "kind", "node")
    readonly_fields = [field.name for field in RemoteJob._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
