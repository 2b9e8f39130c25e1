"""Paths a user gives (`wsf` arguments), checked against the file system's limits up front.

A name longer than the file system allows (`NAME_MAX`, 255 bytes on ext4), a path longer
than `PATH_MAX`, or one the system otherwise refuses to look up (a symbolic-link loop) is a
`PathError` naming the path, the problem and the limit, before a command reads or writes
anything: `Path.exists` raises for these instead of answering (only "no such file" and "not
a folder" count as "does not exist"), which made every command end in an internal error.
The limits are the file system's own (`os.pathconf` of the nearest existing folder).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from abm.errors import ScenarioError, shown

__all__ = ["PathError", "check_path", "short_name"]

#: Errors of a lookup that mean "the file system refuses this path", not "it is absent".
REFUSED = {errno.ENAMETOOLONG: "a name in it is too long for the file system",
           errno.ELOOP: "it runs through a loop of symbolic links"}


class PathError(ScenarioError):
    """A path the file system refuses (too long, a link loop): bad input, exit 2."""


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def check_path(path: str | Path, what: str) -> None:
    """Raise PathError if the file system would refuse `path` (`what`: how the command names
    it, e.g. "--out"). A path that does not exist yet is checked against the limits of the
    nearest existing folder above it."""
    path = Path(path)
    refused: OSError | None = None
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        pass  # absent, or under a file, or not ours to read: the command's own checks say so
    except OSError as exc:
        if exc.errno not in REFUSED:
            raise
        refused = exc  # the limits below name the culprit; if none does, this is said
    absolute = Path(os.path.abspath(path))
    anchor = next((p for p in absolute.parents if _exists(p)), Path(absolute.anchor))
    name_max = _limit(anchor, "PC_NAME_MAX", 255)
    path_max = _limit(anchor, "PC_PATH_MAX", 4096)
    for part in absolute.parts[1:]:
        size = len(os.fsencode(part))
        if size > name_max:
            raise PathError(
                f"{what} {shown(str(path), 100)}: the name {shown(part, 40)} is {size} bytes, "
                f"more than the {name_max} the file system allows for one name; choose a "
                "shorter name.")
    size = len(os.fsencode(absolute))
    if size >= path_max:
        raise PathError(f"{what} {shown(str(path), 100)}: the path is {size} bytes, more than "
                        f"the {path_max - 1} the file system allows; choose a shorter one.")
    if refused is not None:
        raise PathError(f"{what} {shown(str(path), 100)}: {REFUSED[refused.errno or 0]} "
                        f"({refused.strerror}); choose another path.")


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def short_name(name: str, room: int) -> str:
    """`name`, cut to at most `room` bytes (UTF-8) with an 8-hex-digit digest of the whole
    when cut, so that a hidden helper's name built from a name that just fits still fits."""
    if len(os.fsencode(name)) <= room:
        return name
    import hashlib

    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    cut = os.fsencode(name)[: max(0, room - 9)].decode("utf-8", "ignore")
    return f"{cut}~{digest}"
