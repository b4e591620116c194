from django.contrib import admin

from .models import RemoteNode


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
        "created_at",
    )
    list_filter = ("can_query", "can_retrieve", "can_store_to")
    search_fields = ("ae_title", "host", "name")
