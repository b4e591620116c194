"""manage.py apitoken create USERNAME --name NAME [--scope read --scope write] | list | revoke ID"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from backend.accounts.models import ApiToken
from backend.accounts.tokens import create_token, revoke_token


class Command(BaseCommand):
    help = "Create, list and revoke API tokens (Authorization: Bearer) for DICOMweb and scripts."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="make a token; it is printed once")
        create.add_argument("username")
        create.add_argument("--name", default="", help="what the token is for")
        create.add_argument(
            "--scope",
            action="append",
            choices=ApiToken.Scope.values,
            help="read (QIDO/WADO) and/or write (STOW); both by default",
        )
        listing = sub.add_parser("list", help="tokens and when each was last used")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="revoke a token by id")
        revoke.add_argument("id", type=int)

    def handle(self, *args, **options):
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options):
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        _, token = create_token(user, options["name"] or "command line", options["scope"])
        self.stdout.write(token)

    def _list(self, options):
        rows = ApiToken.objects.select_related("user").order_by("user__username", "pk")
        if options["username"]:
            rows = rows.filter(user__username=options["username"])
        for row in rows:
            state = "revoked" if row.revoked_at else "active"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            self.stdout.write(
                f"{row.pk}\t{row.user.username}\t{row.name}\t{row.prefix}…\t"
                f"{','.join(row.scopes)}\t{state}\tlast used {used}"
            )

    def _revoke(self, options):
        row = ApiToken.objects.filter(pk=options["id"]).first()
        if row is None:
            raise CommandError(f"no token {options['id']}")
        revoke_token(row)
        self.stdout.write(f"revoked {row.pk} ({row.name})")
