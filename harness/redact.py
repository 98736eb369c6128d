"""Keep secrets out of everything quantlab stores or prints.

A password in a database URL (``postgresql://user:PASSWORD@host/db``), the value of
a secret option (``--token X``, ``--password=X``) or of a secret query parameter
(``?password=X``), and the lab token when it sits in the environment
(``RAY_AUTH_TOKEN``, or ``QUANTLAB_LAB_TOKEN`` set to a token instead of a file) are
replaced by ``***``. The store applies :func:`redact_text` where it records a run's
command line; the CLI applies it to every JSON document and error line it prints.
Redacting is idempotent: redacted text comes back unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

MASK = "***"

_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*):(?P<secret>[^\s'\"]*)@(?=[^@\s'\"]*)"
)
"""``scheme://user:PASSWORD@`` (the password may hold ``@``: the last ``@`` ends it)."""

_SECRET_WORDS = r"(?:token|password|passwd|pwd|secret|api[-_]?key)"

_SECRET_OPTION = re.compile(
    rf"(?P<head>(?<![\w-])--?[\w-]*{_SECRET_WORDS}(?![\w-]*(?:file|path|dir|mode))[\w-]*"
    r"(?:=|\s+))(?P<secret>'[^']*'|\"[^\"]*\"|[^\s'\"]+)",
    re.IGNORECASE,
)
"""``--token X``, ``--lab-token=X``, ``--password 'X'``; never ``--token-file PATH``."""

_SECRET_PARAM = re.compile(rf"(?P<head>[?&;]{_SECRET_WORDS}=)(?P<secret>[^&;\s'\"]+)",
                           re.IGNORECASE)
"""``?password=X`` / ``&token=X`` in a URL."""

SECRET_ENV = ("RAY_AUTH_TOKEN", "QUANTLAB_LAB_TOKEN", "PGPASSWORD")
"""Environment variables whose values are secrets (a token *file* path is not)."""


def _env_secrets() -> list[str]:
    found = []
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) < 8:  # too short to be a real secret; masking it would garble text
            continue
        if name == "QUANTLAB_LAB_TOKEN" and Path(value).expanduser().exists():
            continue  # the usual case: the path of the token file, not the token
        found.append(value)
    return found


def _masked(value: str) -> str:
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{quote}{MASK}{quote}"


def redact_text(text: str) -> str:
    """``text`` with every password, token and secret option value replaced by ``***``."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _SECRET_OPTION.sub(lambda m: m["head"] + _masked(m["secret"]), text)
    text = _SECRET_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)
    for secret in _env_secrets():
        text = text.replace(secret, MASK)
    return text


def redact_url(location: str) -> str:
    """A store location or other URL fit to print: its password (if any) becomes ``***``."""
    return redact_text(location)


def redact_data(data: Any) -> Any:
    """A JSON-ready value with :func:`redact_text` applied to every string in it."""
    if isinstance(data, str):
        return redact_text(data)
    if isinstance(data, dict):
        return {k: redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    return data
