"""Which exceptions are a user's mistake (bad settings, files or data) and how they read on one line.

Every ``stylepaste`` command prints such an error as one line, ``stylepaste <stage>: error: <message>``, and
exits with 2; any other exception is a bug and keeps its traceback. ``--log-level debug`` shows the traceback of
user errors too.

A user error is a :class:`ValueError` (bad values, undecodable or mismatching data, schema mismatches), a
missing, existing or unreadable path (:class:`FileNotFoundError`, :class:`FileExistsError`,
:class:`NotADirectoryError`, :class:`IsADirectoryError`, :class:`PermissionError`), or any exception class with
``user_error = True`` (e.g. a non-finite loss, an interrupted commit). Runners that wrap a worker's exception
(Beam's ``multi_processing`` mode sends its traceback as text) are searched for the original one.
"""

from __future__ import annotations

import re

USER_ERROR_TYPES: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
)

_USER_ERROR_NAMES = {t.__name__ for t in USER_ERROR_TYPES} | {
    "SchemaMismatchError", "ImageDecodeError", "DecompressionBombError", "NonFiniteError", "InterruptedCommitError",
    "SizeMismatchError", "MissingLabelError", "ArgumentTypeError",
}
_TRACEBACK_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` itself is a user error (see the module docstring)."""
    return isinstance(exc, USER_ERROR_TYPES) or bool(getattr(type(exc), "user_error", False))


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or ``None`` when ``exc`` is not one (a bug).

    Follows ``__cause__`` / ``__context__`` to the outermost user error (the one that adds the most context; a
    runner's wrapper is skipped), and reads a wrapped worker traceback (text) for the last
    ``<UserErrorType>: message`` line.
    """
    found: BaseException | None = None
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and found is None:
        seen.add(id(cur))
        if is_user_error(cur):
            found = cur
        cur = cur.__cause__ or cur.__context__
    if found is not None:
        text = str(found).strip()
        if "Traceback (most recent call last)" not in text:
            return _first_line(text) or type(found).__name__
    lines = [m for m in (_TRACEBACK_LINE.match(line.strip()) for line in str(exc).splitlines()) if m]
    users = [m for m in lines if m.group(1) in _USER_ERROR_NAMES]
    if users:
        return users[-1].group(2).strip()
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
