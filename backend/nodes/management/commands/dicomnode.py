"""manage.py dicomnode add AE_TITLE HOST PORT [--name NAME] [--group GROUP] | list |
remove AE_TITLE"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.nodes.services import NodeError, add_node, list_nodes, remove_node


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise CommandError(f"port must be a number from 1 to 65535, got {text!r}") from None
    if not 0 < port < 65536:
        raise CommandError(f"port must be a number from 1 to 65535, got {port}")
    return port


class Command(BaseCommand):
    help = "Register, list and remove remote DICOM nodes (modalities, PACS, workstations)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,remove}")
        add = actions.add_parser("add", help="register a node")
        add.add_argument("ae_title", metavar="AE_TITLE")
        add.add_argument("host", metavar="HOST")
        add.add_argument("port", metavar="PORT")
        add.add_argument("--name", default="", help="a description, e.g. 'CT room 2'")
        add.add_argument(
            "--group",
            default="",
            metavar="NAME",
            help="limit its queries and retrieves to this access group's studies",
        )
        add.add_argument("--no-query", action="store_true", help="refuse its C-FIND requests")
        add.add_argument(
            "--no-retrieve", action="store_true", help="refuse its C-MOVE/C-GET requests"
        )
        add.add_argument(
            "--no-store-to", action="store_true", help="never send images to it (C-MOVE)"
        )
        actions.add_parser("list", help="list the registered nodes")
        remove = actions.add_parser("remove", help="forget a node")
        remove.add_argument("ae_title", metavar="AE_TITLE")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except NodeError as exc:
            raise CommandError(str(exc)) from None

    def _add(self, ae_title, host, port, name, group, no_query, no_retrieve, no_store_to, **_):
        node = add_node(
            ae_title,
            host,
            port_number(port),
            name,
            group,
            can_query=not no_query,
            can_retrieve=not no_retrieve,
            can_store_to=not no_store_to,
        )
        self.stdout.write(f"added {node}")

    def _remove(self, ae_title, **_):
        remove_node(ae_title)
        self.stdout.write(f"removed {ae_title.strip()}")

    def _list(self, **_):
        nodes = list(list_nodes())
        if not nodes:
            self.stdout.write("no DICOM nodes registered (add one: dicomnode add AE HOST PORT)")
            return
        rows = [("AE TITLE", "HOST", "PORT", "QUERY", "RETRIEVE", "STORE TO", "STUDIES", "NAME")]
        for node in nodes:
            flags = (node.can_query, node.can_retrieve, node.can_store_to)
            yes_no = ["yes" if flag else "no" for flag in flags]
            studies = node.access_group.name if node.access_group else "all"
            rows.append((node.ae_title, node.host, str(node.port), *yes_no, studies, node.name))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            line = "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
            self.stdout.write(line.rstrip())
