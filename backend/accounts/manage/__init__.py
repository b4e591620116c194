"""What administrators do on the /manage pages, one module a subject: users (with their
invitation links, sessions and API tokens), groups and their rules, study shares, and reading
and exporting the audit log (audit_log). common holds what they share: Actor, the errors,
the administrator check and the audit event; inputs checks what administrators send.

Every change is a pair, as in zulip's actions: `check_*` validates the input and that the
actor is an administrator, raising ManageError (its message is shown to them) or NotFound;
`do_*` makes the change and appends its audit event in the same transaction. Input arrives
as decoded JSON or query parameters, so nothing is trusted: wrong types, NUL characters,
lone surrogates and over-long values are refused, never left to the database.

The views call them as manage.users.check_create_user(...) and so on.
"""

from . import audit_log, common, groups, inputs, shares, users

__all__ = ["audit_log", "common", "groups", "inputs", "shares", "users"]
