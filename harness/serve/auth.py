"""Who may read the dashboard: loopback by default, the lab token beyond it.

``quantlab serve`` listens on 127.0.0.1. Listening on any other address (``--host
0.0.0.0``) needs the lab's token file (:mod:`quantlab.harness.lab.security`: the one every
lab host holds, mode 0600); without it the command refuses in one line. With a token,
every request must carry it: ``Authorization: Bearer TOKEN`` (scripts, the JSON
endpoints) or the session cookie that ``/login`` sets after the token is typed in once
(browsers). The cookie holds an HMAC of the token, never the token itself.

On loopback without a token, requests must name a loopback host (``Host:
127.0.0.1:PORT`` or ``localhost``): a web page elsewhere cannot reach the dashboard by
pointing a DNS name at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from quantlab.harness.errors import UserError

COOKIE = "quantlab_session"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PUBLIC_PATHS = ("/login", "/static/", "/favicon.ico")
"""Paths served without the token: the login form, the stylesheet and script, no icon."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | None) -> str:
    """The lab token from ``token_file`` (default ``$QUANTLAB_LAB_TOKEN`` or
    ``~/.quantlab/lab-token``), refused when missing, empty or readable by others."""
    from quantlab.harness.lab.security import check_token, default_token_path

    path = Path(token_file).expanduser() if token_file else default_token_path()
    try:
        text = check_token(path).read_text().strip()
    except UnicodeDecodeError:
        raise UserError(f"lab token {path}: not text", hint="copy the head's token file "
                        "again (quantlab lab head creates it)") from None
    if not text:
        raise UserError(f"lab token {path}: empty file", hint="copy the head's token file again")
    return text


def require_token_beyond_loopback(host: str, token_file: str | None,
                                  token_given: bool) -> str | None:
    """The token to serve with: required (read from the token file) when ``host`` is not
    loopback, or when a token file was named; None on loopback without one. A UserError
    names the host and what to do when the token cannot be read."""
    if is_loopback(host) and not token_given:
        return None
    try:
        return read_token(token_file)
    except UserError as exc:
        if is_loopback(host):
            raise
        raise UserError(f"--host {host}: listening beyond this machine needs the lab token "
                        f"({exc.message})", hint="pass --token-file with the lab's token file "
                        "(mode 0600), or keep the default --host 127.0.0.1") from None


@dataclass(frozen=True)
class TokenCheck:
    """The token requests must carry, and the session cookie that stands for it."""

    token: str

    @property
    def cookie_value(self) -> str:
        """The session cookie: an HMAC of the token (the token never leaves the server)."""
        return hmac.new(self.token.encode(), b"quantlab serve session", hashlib.sha256
                        ).hexdigest()

    def accepts(self, authorization: str | None, cookie: str | None) -> bool:
        """Whether a request with these headers carries the token."""
        if authorization and authorization.lower().startswith("bearer "):
            return hmac.compare_digest(authorization[7:].strip().encode(), self.token.encode())
        return bool(cookie) and hmac.compare_digest(str(cookie), self.cookie_value)

    def matches(self, typed: str) -> bool:
        """Whether the token typed into the login form is the token."""
        return hmac.compare_digest(typed.strip().encode(), self.token.encode())


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
