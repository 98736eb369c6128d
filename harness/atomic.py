"""Files written whole or not at all: a temporary file beside the target, then a rename.

Reports, exports and CI outputs go through here, so an interrupted or failed write never
leaves a half-written file where a reader (a browser, a CI system) would pick it up.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from quantlab.harness.errors import UserError


def replace_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary file beside ``path``, then rename it onto ``path``.

    Parent folders are made. An unwritable folder is a UserError naming the path; if
    ``write`` fails, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise UserError(f"{target}: cannot write it ({exc.strerror})",
                        hint="give a path in a writable folder") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; returns the path."""
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return replace_atomically(path, write)
