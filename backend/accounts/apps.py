from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"
    verbose_name = "Accounts and audit"

    def ready(self) -> None:
        # Connect the login/logout receivers that record browser sessions before any
        # request has loaded the middleware that lives in the same module.
        from . import sessions  # noqa: F401
