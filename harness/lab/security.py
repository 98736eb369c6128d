"""Lab security: the token file every member of the lab shares, and optional mutual TLS.

Whoever holds the token can run code on every lab host, so it is created readable by its
owner only and refused when others can read it. :meth:`LabSecurity.env` is what Ray
(head, nodes, drivers) reads.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from quantlab.harness.errors import UserError


@dataclass(frozen=True)
class LabSecurity:
    """The token file every member of the lab shares, and optional mutual TLS."""

    token_path: Path
    tls_dir: Path | None = None  # holds ca.crt, node.crt, node.key

    def env(self) -> dict[str, str]:
        """Environment that makes Ray (head, nodes, drivers) use the token (and TLS)."""
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_USE_TLS": "0"}
        if self.tls_dir is not None:
            files = tls_files(self.tls_dir)
            env.update({"RAY_USE_TLS": "1", "RAY_TLS_CA_CERT": str(files["ca"]),
                        "RAY_TLS_SERVER_CERT": str(files["cert"]),
                        "RAY_TLS_SERVER_KEY": str(files["key"])})
        return env

    def apply(self) -> None:
        """Put :meth:`env` into this process's environment (before ``ray.init``), dropping
        the certificate paths an earlier lab with TLS left there."""
        env = self.env()
        for key in [k for k in os.environ if k.startswith("RAY_TLS_") and k not in env]:
            del os.environ[key]
        os.environ.update(env)


def default_token_path() -> Path:
    """``$QUANTLAB_LAB_TOKEN`` or ``~/.quantlab/lab-token``."""
    env = os.environ.get("QUANTLAB_LAB_TOKEN")
    return Path(env).expanduser() if env else Path.home() / ".quantlab" / "lab-token"


def create_token(path: Path) -> Path:
    """Write a new random token to ``path`` readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return path


def check_token(path: Path) -> Path:
    """Refuse a missing, empty or group/world-readable token file, naming the fix."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"lab token {path}: no such file",
                        hint="copy the token file from the head (created by quantlab lab head) "
                        "or pass --token-file") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"lab token {path}: readable by other users "
                        f"(mode {stat.S_IMODE(st.st_mode):o})",
                        hint=f"chmod 600 {path}: whoever holds it can run code on every lab host")
    if st.st_size == 0:
        raise UserError(f"lab token {path}: empty file", hint="copy the head's token file again")
    return path


def tls_files(folder: Path) -> dict[str, Path]:
    """The CA certificate, this host's certificate and key in a TLS folder."""
    files = {"ca": folder / "ca.crt", "cert": folder / "node.crt", "key": folder / "node.key"}
    for name, path in files.items():
        if not path.is_file():
            raise UserError(f"TLS folder {folder}: {path.name} missing",
                            hint=f"put ca.crt, node.crt and node.key there ({name})")
    return files


def security(token_file: str | None, tls_dir: str | None, *, create: bool = False) -> LabSecurity:
    """Resolve the token (created 0600 when ``create`` and missing) and TLS options."""
    path = Path(token_file).expanduser() if token_file else default_token_path()
    if create and not path.exists():
        create_token(path)
    tls = tls_dir or os.environ.get("QUANTLAB_LAB_TLS")
    sec = LabSecurity(check_token(path.resolve()), Path(tls).resolve() if tls else None)
    if sec.tls_dir is not None:
        tls_files(sec.tls_dir)
    return sec
