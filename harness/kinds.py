"""The registry of device kinds: one line per kind, from which everything that names kinds
derives (the agents discovery asks, plan files' kind selectors and their JSON Schema, the
CLI's help texts, :data:`quantlab.harness.records.Platform`).

A kind's name is what its devices carry as ``DeviceInfo.platform``, what its agent calls its
``kind``, what plan files and ``lab join --devices`` accept and what stored records show.
Adding a device kind is one folder under ``agents/`` (an agent class implementing
:class:`quantlab.agents.base.Agent`) plus one line in :data:`KINDS`; a test or a plug-in
adds one at run time with :func:`register` (and removes it with :func:`unregister`).

Data only: the agents are named as ``"module:Class"`` strings and imported when used
(:func:`quantlab.agents.base.load_agent`), so reading the registry costs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quantlab.harness.errors import UserError


@dataclass(frozen=True)
class Kind:
    """One device kind: its name, its agent class and a one-line summary for help texts."""

    name: str
    agent: str
    """The agent class as ``"package.module:Class"``, imported only when the kind is used."""
    summary: str


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("sim", "quantlab.agents.sim.agent:SimAgent", "this host's CPU through LiteRT"),
    Kind("android", "quantlab.agents.android.agent:AndroidAgent",
         "Android phones over adb, measured with benchmark_model"),
    Kind("ios", "quantlab.agents.ios.agent:IosAgent",
         "iPhones over usbmux, measured by the BenchRunner app"),
    Kind("linux", "quantlab.agents.linux.agent:SshAgent",
         "Linux gateways over SSH (hosts file), measured with the LiteRT runner"),
)}
"""Every known device kind by name, in the order discovery asks them."""

NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")
"""What a kind's name may be: short (the store keeps it in a 20-character column), lower case."""

AGENT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class UnknownKind(UserError):
    """A device kind that is not registered."""


def names() -> list[str]:
    """The registered kinds' names, in registry order."""
    return list(KINDS)


def get(name: str) -> Kind:
    """The kind called ``name``; :class:`UnknownKind` (one line, the known ones) otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"device kind {name!r}: unknown",
                          hint=f"known kinds: {', '.join(KINDS)}") from None


def register(name: str, agent: str, summary: str) -> Kind:
    """Add a device kind (a test's or a plug-in's) whose agent is ``agent``
    (``"module:Class"``); refuses a malformed or already registered name."""
    if not NAME.fullmatch(name):
        raise UserError(f"device kind {name!r}: not a valid name",
                        hint="lower-case letters, digits, '-' or '_', at most 20 characters")
    if not AGENT.fullmatch(agent):
        raise UserError(f"device kind {name}: agent {agent!r} is not 'module:Class'")
    if name in KINDS:
        raise UserError(f"device kind {name!r} is already registered ({KINDS[name].agent})")
    kind = Kind(name, agent, summary)
    KINDS[name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind added with :func:`register` (missing is fine)."""
    KINDS.pop(name, None)


def help_text() -> str:
    """The kinds for a help text: ``sim, android, ios, linux``."""
    return ", ".join(KINDS)
