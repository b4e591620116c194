from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "backend.live"
    label = "live"
    verbose_name = "Live events"
