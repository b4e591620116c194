from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "backend.live"
    label = "live"
    verbose_name = "Live events"

    def ready(self) -> None:
        from .audience import connect_signals

        connect_signals()
