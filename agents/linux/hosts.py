"""The hosts file of Linux gateways: where it is, what a ``[[gateway]]`` entry holds.

A TOML file a team keeps in version control, named by ``QUANTLAB_HOSTS`` (default
``~/.config/quantlab/hosts.toml``); its format is in :mod:`quantlab.agents.linux.agent` and
docs/devices.md.
Every mistake is a :class:`HostsFileError` naming the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError

HOSTS_ENV = "QUANTLAB_HOSTS"
DEFAULT_HOSTS = "~/.config/quantlab/hosts.toml"
DEFAULT_WORKDIR = ".cache/quantlab"
"""Work folder on the gateway, relative to the login's home unless absolute."""


class HostsFileError(UserError):
    """The hosts file is missing, not TOML, or has a wrong key; the message names it."""



@dataclass(frozen=True)
class Gateway:
    """One ``[[gateway]]`` entry of the hosts file."""

    name: str
    address: str
    host: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    python: str | None = None
    workdir: str = DEFAULT_WORKDIR
    sudo: bool = False  # run the measuring step with `sudo -n` (e.g. to read RAPL counters)
    connect_timeout_s: float = 10.0
    hot_c: float = 75.0  # a board at or above this temperature is "hot"
    cooldown_s: float = 60.0  # wait up to this long for a hot board before measuring
    energy_baseline_s: float = 2.0  # idle power sampled before the job when --energy

    @property
    def device_id(self) -> str:
        """The device id: ``ssh:NAME``."""
        return f"ssh:{self.name}"


_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,), "address": (str,), "identity": (str,), "known_hosts": (str,),
    "python": (str,), "workdir": (str,), "sudo": (bool,), "connect_timeout_s": (int, float),
    "hot_c": (int, float), "cooldown_s": (int, float), "energy_baseline_s": (int, float),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ADDRESS = re.compile(r"(?:(?P<user>[^@\s:/]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@\s:/\[\]]+)"
                      r"(?::(?P<port>\d{1,5}))?")


def hosts_path() -> tuple[Path, bool]:
    """The hosts file's path and whether it was named explicitly (``QUANTLAB_HOSTS``)."""
    named = os.environ.get(HOSTS_ENV)
    return Path(named or DEFAULT_HOSTS).expanduser(), bool(named)


def parse_address(value: str) -> tuple[str | None, str, int | None]:
    """``user@host:port`` (user and port optional, IPv6 in brackets) → its parts."""
    m = _ADDRESS.fullmatch(value.strip())
    if not m:
        raise ValueError(f'expected "user@host:port", got {value!r}')
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return m["user"], m["host"].strip("[]"), port


def parse_hosts(text: str, source: str = "hosts.toml") -> list[Gateway]:
    """Gateways of a hosts file's text; :class:`HostsFileError` naming the key otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HostsFileError(f"{source}: not valid TOML ({exc})") from None
    for key in data:
        if key != "gateway":
            raise HostsFileError(f"{source}: {key}: unknown key",
                                 hint="the file holds [[gateway]] tables only")
    entries = data.get("gateway", [])
    if not isinstance(entries, list):
        raise HostsFileError(f"{source}: gateway: must be an array of tables ([[gateway]])")
    gateways: list[Gateway] = []
    for i, entry in enumerate(entries):
        where = f"{source}: gateway[{i}]"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        if not isinstance(entry, dict):
            raise HostsFileError(f"{where}: must be a table")
        for key, value in entry.items():
            if key not in _KEYS:
                raise HostsFileError(f"{where}.{key}: unknown key",
                                     hint=f"known keys: {', '.join(_KEYS)}")
            types = _KEYS[key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                want = " or ".join("number" if t in (int, float) else t.__name__ for t in types)
                raise HostsFileError(f"{where}.{key}: expected a {want.replace('number or ', '')}"
                                     f", got {value!r}")
        for key in ("name", "address"):
            if key not in entry:
                raise HostsFileError(f"{where}.{key}: missing")
        if not _NAME.fullmatch(entry["name"]):
            raise HostsFileError(f"{where}.name: {entry['name']!r} is not a valid name",
                                 hint="letters, digits, '.', '_', '-'")
        if any(g.name == entry["name"] for g in gateways):
            raise HostsFileError(f"{where}.name: {entry['name']!r} is used twice")
        try:
            user, host, port = parse_address(entry["address"])
        except ValueError as exc:
            raise HostsFileError(f"{where}.address: {exc}") from None
        for key in ("connect_timeout_s", "hot_c", "cooldown_s", "energy_baseline_s"):
            if key in entry and entry[key] < 0:
                raise HostsFileError(f"{where}.{key}: must not be negative")
        fields: dict[str, Any] = {
            k: (float(v) if isinstance(v, int) and not isinstance(v, bool)
                and k.endswith(("_s", "_c")) else v) for k, v in entry.items()}
        gateways.append(Gateway(host=host, user=user, port=port, **fields))
    return gateways


def load_hosts(path: Path | None = None) -> list[Gateway]:
    """The gateways of the hosts file (none when the default file does not exist)."""
    explicit = path is not None
    if path is None:
        path, explicit = hosts_path()
    if not path.is_file():
        if explicit:
            raise HostsFileError(f"{path}: no such hosts file",
                                 hint=f"create it or unset {HOSTS_ENV} (docs/devices.md)")
        return []
    try:
        text = path.read_text()
    except OSError as exc:
        raise HostsFileError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_hosts(text, str(path))
