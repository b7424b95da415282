"""The one error type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class NumbenchError(Exception):
    """A user-facing problem with an input: a file, a field, an argument.

    ``str(err)`` is a single line that names the file (and field) at fault.
    """

    def __init__(self, message: str, *, path: object | None = None, field: str | None = None):
        where = str(path) if path is not None else ""
        if field:
            where = f"{where}: field '{field}'" if where else f"field '{field}'"
        self.path, self.field = path, field
        super().__init__(f"{where}: {message}" if where else message)
