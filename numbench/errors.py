"""The one error type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

# Control characters (line breaks among them) as escapes: a name or value quoted from a
# file can neither break the message's one line nor send a terminal escape sequence.
_VISIBLE = {c: repr(chr(c))[1:-1] for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]
            if c != 0x09}


class NumbenchError(Exception):
    """A user-facing problem with an input: a file, a field, an argument.

    ``str(err)`` is a single line that names the file (and field) at fault.
    """

    def __init__(self, message: str, *, path: object | None = None, field: str | None = None):
        where = str(path) if path is not None else ""
        if field:
            where = f"{where}: field '{field}'" if where else f"field '{field}'"
        self.path, self.field = path, field
        text = f"{where}: {message}" if where else message
        super().__init__(text.translate(_VISIBLE))
