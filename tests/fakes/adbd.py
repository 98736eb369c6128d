"""A loopback Android device: a small adbd that speaks the real adb wire protocol.

A real ``adb`` server connects to it with ``adb connect 127.0.0.1:PORT``. It implements
CNXN (answered directly, no AUTH), OPEN/OKAY/WRTE/CLSE streams, ``shell`` (v1 and
shell protocol v2 with real exit codes) and ``sync`` (STAT, LIST, SEND, RECV, QUIT).
Properties and ``dumpsys`` answers come from a device profile (JSON in
``device_profiles/``); the filesystem is a sandbox folder; ``benchmark_model`` is a
stand-in that records its argv and replays a real recorded output for the requested
delegate (``tests/fixtures/android``), printed over time as the real one prints it: the
lines up to its measured-run line ("Running benchmark for at least …") when the timed
loop starts, the rest when it ends (seen in a ``> file`` it writes to; a profile's
``startup`` gives process start and delegate init a duration and a battery draw of their
own); asked for ``--output_filepath`` it computes the
outputs with host LiteRT on the ``--input_layer_value_files`` inputs (the one thing it
computes rather than replays: a loopback device has no delegate of its own), and says so
in its output (``STAND_IN_NOTE``); ExecuTorch's ``executor_runner`` is a stand-in that
executes the ``.pte`` with the host's ExecuTorch runtime and says so (:mod:`.executor_runner`);
a profile's ``numerics_faults`` ({delegate: "zeros" or
"zero-class-0"}, or "wrong-kernel:LOGISTIC=NEG": that op type computed by another unary
kernel) makes a delegate perturb them. quantlab's outputs loop (``outputs.sh``:
one launch per sample) runs as the script does it. A test
can make it drop the connection in the middle of a benchmark, and keep it away for a
while or for good, and make it throttle on a schedule (:meth:`FakeAndroidDevice.throttle`:
slower timings, thermal status severe, lower CPU frequencies from a set time on).

Only what quantlab's Android agent uses is implemented; the banner advertises only
``shell_v2`` and ``cmd``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import executor_runner

A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024

PROFILES = Path(__file__).parent / "device_profiles"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "android"


def load_profile(name: str) -> dict[str, Any]:
    """A device profile by name (``pixel7_tensor``, ``snapdragon_865`` …)."""
    data: dict[str, Any] = json.loads((PROFILES / f"{name}.json").read_text())
    return data


def _packet(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    checksum = sum(data) & 0xFFFFFFFF
    header = struct.pack("<6I", command, arg0, arg1, len(data), checksum,
                         command ^ 0xFFFFFFFF)
    return header + data


@dataclass
class _Stream:
    local_id: int
    remote_id: int
    service: str
    acked: threading.Event = field(default_factory=threading.Event)
    inbox: bytearray = field(default_factory=bytearray)
    has_data: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False


class _Connection:
    """One TCP connection from the adb server."""

    def __init__(self, device: FakeAndroidDevice, sock: socket.socket) -> None:
        self.device = device
        self.sock = sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.alive = True

    # ------------------------------------------------------------------ framing

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self.lock:
            if not self.alive:
                raise ConnectionError("connection dropped")
            self.sock.sendall(_packet(command, arg0, arg1, data))

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while self.alive:
                header = self._read_exact(24)
                command, arg0, arg1, length, _check, _magic = struct.unpack("<6I", header)
                data = self._read_exact(length) if length else b""
                self._dispatch(command, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.alive = False
        for st in list(self.streams.values()):
            st.closed = True
            st.acked.set()
            with st.has_data:
                st.has_data.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            if self.device.silent:  # a hung adbd: the server lists the device as offline
                return
            if self.device.auth_required:  # a phone whose user has not allowed this host yet
                self.send(A_AUTH, 1, 0, os.urandom(20))
            else:
                self.send(A_CNXN, VERSION, MAX_PAYLOAD, self.device.banner())
        elif command == A_AUTH:
            if arg0 == 2:  # a signature we cannot know: ask again (the host then sends its key)
                self.send(A_AUTH, 1, 0, os.urandom(20))
            # arg0 == 3 (public key): the phone would show the prompt; nobody accepts it
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            local_id = self.next_id
            self.next_id += 1
            stream = _Stream(local_id, arg0, service)
            self.streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            threading.Thread(target=self._run_service, args=(stream,), daemon=True,
                             name=f"fake-adbd-{self.device.serial}-{local_id}").start()
        elif command == A_OKAY:
            st = self.streams.get(arg1)
            if st:
                st.acked.set()
        elif command == A_WRTE:
            st = self.streams.get(arg1)
            if st:
                with st.has_data:
                    st.inbox.extend(data)
                    st.has_data.notify_all()
                self.send(A_OKAY, st.local_id, st.remote_id)
        elif command == A_CLSE:
            st = self.streams.pop(arg1, None)
            if st:
                st.closed = True
                st.acked.set()
                with st.has_data:
                    st.has_data.notify_all()

    # ------------------------------------------------------------------ stream I/O

    def write(self, st: _Stream, data: bytes) -> None:
        for i in range(0, len(data), 64 * 1024):
            if st.closed:
                raise ConnectionError("stream closed")
            st.acked.clear()
            self.send(A_WRTE, st.local_id, st.remote_id, data[i:i + 64 * 1024])
            if not st.acked.wait(30) or not self.alive:
                raise ConnectionError("no OKAY from host")

    def read(self, st: _Stream, n: int) -> bytes:
        with st.has_data:
            while len(st.inbox) < n:
                if st.closed or not self.alive:
                    raise ConnectionError("stream closed")
                st.has_data.wait(1)
            out = bytes(st.inbox[:n])
            del st.inbox[:n]
            return out

    def finish(self, st: _Stream) -> None:
        if not st.closed and self.alive:
            self.streams.pop(st.local_id, None)
            with contextlib.suppress(ConnectionError, OSError):
                self.send(A_CLSE, st.local_id, st.remote_id)

    # ------------------------------------------------------------------ services

    def _run_service(self, st: _Stream) -> None:
        try:
            if st.service.startswith("shell"):
                head, _, cmd = st.service.partition(":")
                v2 = "v2" in head.split(",")
                out, err, code = self.device.run_shell(cmd, self)
                if v2:
                    payload = b""
                    if out:
                        payload += struct.pack("<BI", 1, len(out)) + out
                    if err:
                        payload += struct.pack("<BI", 2, len(err)) + err
                    payload += struct.pack("<BI", 3, 1) + bytes([code & 0xFF])
                    self.write(st, payload)
                else:
                    self.write(st, out + err)
            elif st.service.startswith("sync:"):
                self._sync(st)
            self.finish(st)
        except (ConnectionError, OSError):
            pass

    def _sync(self, st: _Stream) -> None:
        dev = self.device
        while True:
            try:
                head = self.read(st, 8)
            except ConnectionError:
                return
            cmd, length = head[:4], struct.unpack("<I", head[4:])[0]
            if cmd == b"QUIT":
                return
            arg = self.read(st, length).decode("utf-8", "replace")
            if cmd == b"STAT":
                p = dev.host_path(arg)
                if p.exists():
                    stt = p.stat()
                    mode = (0o040755 if p.is_dir() else 0o100644)
                    self.write(st, b"STAT" + struct.pack("<III", mode, stt.st_size,
                                                         int(stt.st_mtime)))
                else:
                    self.write(st, b"STAT" + struct.pack("<III", 0, 0, 0))
            elif cmd == b"LIST":
                p = dev.host_path(arg)
                out = b""
                if p.is_dir():
                    for child in sorted(p.iterdir()):
                        stt = child.stat()
                        mode = 0o040755 if child.is_dir() else 0o100644
                        name = child.name.encode()
                        out += b"DENT" + struct.pack("<IIII", mode, stt.st_size,
                                                     int(stt.st_mtime), len(name)) + name
                self.write(st, out + b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
            elif cmd == b"SEND":
                path, _, _mode = arg.rpartition(",")
                data = bytearray()
                while True:
                    h = self.read(st, 8)
                    kind, n = h[:4], struct.unpack("<I", h[4:])[0]
                    if kind == b"DATA":
                        data.extend(self.read(st, n))
                    elif kind == b"DONE":
                        break
                    else:
                        raise ConnectionError(f"bad SEND record {kind!r}")
                target = dev.host_path(path)
                if target.parent.is_dir():
                    target.write_bytes(bytes(data))
                    dev.pushed.append(path)
                    self.write(st, b"OKAY" + struct.pack("<I", 0))
                else:
                    msg = b"remote couldn't create file: No such file or directory"
                    self.write(st, b"FAIL" + struct.pack("<I", len(msg)) + msg)
            elif cmd == b"RECV":
                p = dev.host_path(arg)
                if not p.is_file():
                    msg = b"No such file or directory"
                    self.write(st, b"FAIL" + struct.pack("<I", len(msg)) + msg)
                else:
                    content = p.read_bytes()
                    out = b""
                    for i in range(0, len(content), 64 * 1024):
                        chunk = content[i:i + 64 * 1024]
                        out += b"DATA" + struct.pack("<I", len(chunk)) + chunk
                    self.write(st, out + b"DONE" + struct.pack("<I", 0))
            else:
                msg = f"unknown sync command {cmd!r}".encode()
                self.write(st, b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return


STAND_IN_NOTE = ("stand-in benchmark_model: outputs computed on the host with LiteRT (ai-edge-"
                 "litert), not on a phone's {delegate} delegate\n")
"""What the stand-in prints after writing ``--output_filepath``: it says what computed them."""


def _lose_class_0(outputs: list[Any]) -> None:
    """The ``zero-class-0`` numerics fault, in place: a classifier's one 2-D output gets
    class 0's score below every other; an SSD detector's class-0 boxes are labelled class 1
    (TF's output order: boxes, classes, scores, count)."""
    import numpy as np

    flat = [o for o in outputs if o.ndim == 2]
    if len(flat) == 1:
        flat[0][:, 0] = flat[0].min(axis=1) - 1.0
    elif flat:
        flat[0][np.isclose(flat[0], 0.0)] = 1.0


def _wrong_kernel(model: bytes, op_type: str, instead: str) -> bytes:
    """The ``wrong-kernel:OP=OTHER`` numerics fault: the model with every ``OP`` computed by
    the kernel of the unary op ``OTHER`` (a delegate whose ``OP`` kernel is wrong), so one op
    type's outputs, and what follows them, leave the reference's."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(model), 0)
    want, code = getattr(s.BuiltinOperator, op_type), getattr(s.BuiltinOperator, instead)
    for oc in m.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == want:
            oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _unquoted_substitution(cmd: str) -> bool:
    """Whether ``cmd`` holds ``$(`` or a backquote that sh would expand (not in '…')."""
    quote = ""
    escaped = False
    for i, ch in enumerate(cmd):
        if escaped:
            escaped = False
        elif quote == "'":
            quote = "" if ch == "'" else quote
        elif ch == "\\":
            escaped = True
        elif ch == "'" and not quote:
            quote = "'"
        elif ch == '"':
            quote = "" if quote == '"' else '"'
        elif ch == "`" or (ch == "$" and cmd[i + 1:i + 2] == "("):
            return True
    return False


class FakeAndroidDevice:
    """A loopback adbd on 127.0.0.1 with a profile, a sandbox and a benchmark_model stand-in."""

    def __init__(self, profile: str | dict[str, Any], sandbox: Path, port: int = 0,
                 auth_required: bool = False, silent: bool = False) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.auth_required = auth_required
        self.silent = silent
        self.sandbox = sandbox
        for d in ("data/local/tmp", "sys/class/power_supply/battery"):
            (sandbox / d).mkdir(parents=True, exist_ok=True)
        battery = self.profile.get("battery_sysfs", {})
        for name, value in battery.items():
            if name != "load":
                (sandbox / "sys/class/power_supply/battery" / name).write_text(f"{value}\n")
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self.connections: list[_Connection] = []
        self.benchmark_calls: list[list[str]] = []
        self.starts: list[tuple[str, bool]] = []
        """(delegate, warm) per benchmark_model launch: warm when it started from its cache."""
        self.executor_runner_calls: list[list[str]] = []
        self.pushed: list[str] = []
        self.shell_lines: list[str] = []
        self.substitutions: list[str] = []
        self.drop_next_benchmarks = 0
        self.fail_launches_from: int | None = None  # benchmark launch N (from 1) on fails
        self.down_for_s: float | None = 0.0  # after a drop: refuse for this long; None = forever
        self.benchmark_seconds = float(self.profile.get("benchmark_seconds", 0.05))
        self.throttle_after_s: float | None = None  # see throttle()
        self.throttle_factor = 1.0
        self._throttle_clock: float | None = None
        for cpu, khz in self.profile.get("cpufreq_khz", {}).items():
            freq = sandbox / "sys/devices/system/cpu" / cpu / "cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            (freq / "scaling_cur_freq").write_text(f"{khz}\n")
        for path, hz in self.profile.get("gpufreq_hz", {}).items():  # kgsl gpuclk, devfreq
            self.host_path(path).parent.mkdir(parents=True, exist_ok=True)
            self.host_path(path).write_text(f"{hz}\n")
        self._accepting = threading.Event()
        self._accepting.set()
        self._stop = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"fake-adbd-{self.port}")
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle

    def _accept_loop(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            if not self._accepting.is_set():
                sock.close()
                continue
            conn = _Connection(self, sock)
            self.connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def drop(self) -> None:
        """Cut every connection now (as if the USB cable was pulled)."""
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()

    def go_away(self, seconds: float | None) -> None:
        """Drop and refuse new connections for ``seconds`` (None: never come back)."""
        self._accepting.clear()
        self.drop()
        if seconds is None:
            return
        timer = threading.Timer(seconds, self._accepting.set)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Stop serving."""
        self._stop = True
        self.drop()
        self.server.close()

    def throttle(self, after_s: float, factor: float = 2.0) -> None:
        """Throttle on a schedule: from ``after_s`` seconds after the next benchmark launch
        starts, every launch's timings are ``factor`` times the recorded ones, the thermal
        status reads 3 (severe) and the CPU frequencies drop by the same factor."""
        self.throttle_after_s, self.throttle_factor, self._throttle_clock = after_s, factor, None

    def throttled(self) -> bool:
        """Whether the throttling schedule has reached its point."""
        return (self.throttle_after_s is not None and self._throttle_clock is not None
                and time.monotonic() - self._throttle_clock >= self.throttle_after_s)

    def _scaled(self, text: str) -> str:
        """A recorded output with its timings (µs) multiplied by the throttle factor."""
        def times(m: re.Match[str]) -> str:
            return f"{m.group(1)}{float(m.group(2)) * self.throttle_factor:g}"

        lines = []
        for line in text.splitlines(keepends=True):
            if line.lstrip().startswith("count=") or "Inference timings in us" in line:
                line = re.sub(r"((?:first|curr|min|max|avg|std|p5|median|p95)=)([\d.]+)",
                              times, line)
                line = re.sub(r"((?:First inference|Warmup \(avg\)|Inference \(avg\)): )"
                              r"([\d.]+)", times, line)
            lines.append(line)
        return "".join(lines)

    WARM_INIT_FACTOR = 0.2
    """A cached GPU/NNAPI delegate's init: this share of the recorded (compiling) one."""

    def _cached(self, flags: dict[str, str], delegate: str, graph: str) -> bool:
        """``--delegate_serialize_dir``/``_token`` for gpu and nnapi, as the delegates honour
        them: a cache file for this token and model in an existing folder makes the start
        warm; otherwise the launch compiles and writes it (a missing folder: nothing)."""
        folder, token = flags.get("delegate_serialize_dir"), flags.get("delegate_serialize_token")
        if not folder or not token or delegate not in ("gpu", "nnapi"):
            return False
        where = self.host_path(folder)
        if not where.is_dir():
            return False
        cache = where / f"{token}.{delegate}.bin"
        model = hashlib.sha256(self.host_path(graph).read_bytes()).hexdigest()
        if cache.is_file() and cache.read_text() == model:
            return True
        cache.write_text(model)
        return False

    def _warm(self, text: str) -> str:
        """A recorded output as a cached start prints it: Init shorter (no compile)."""
        def init(m: re.Match[str]) -> str:
            return f"{m.group(1)}{float(m.group(2)) * self.WARM_INIT_FACTOR:g}"

        return re.sub(r"(Init: )([\d.]+)", init, text)

    # ------------------------------------------------------------------ device facts

    def banner(self) -> bytes:
        """The CNXN banner: device props and the features this fake implements."""
        props = self.profile["props"]
        return (f"device::ro.product.name={props.get('ro.product.name', 'fake')};"
                f"ro.product.model={props.get('ro.product.model', 'fake')};"
                f"ro.product.device={props.get('ro.product.device', 'fake')};"
                "features=shell_v2,cmd").encode()

    def host_path(self, device_path: str) -> Path:
        """Where a device path lies in the sandbox (never outside it)."""
        parts = [p for p in device_path.split("/") if p not in ("", ".", "..")]
        return self.sandbox.joinpath(*parts)

    # ------------------------------------------------------------------ shell

    def run_shell(self, cmd: str, conn: _Connection | None = None) -> tuple[bytes, bytes, int]:
        """Run a command line of ``&&``/``;``-joined simple commands.

        This fake runs no command substitution: a ``$(`` or backquote outside single
        quotes, which a real device shell would run, is refused (exit 127) and recorded in
        :attr:`substitutions`, so a test sees an unquoted path.
        """
        self.shell_lines.append(cmd)
        if _unquoted_substitution(cmd):
            self.substitutions.append(cmd)
            return b"", b"fake adbd: command substitution in an unquoted word\n", 127
        lexer = shlex.shlex(cmd, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        out, err, code = b"", b"", 0
        cwd = "/"
        words: list[str] = []
        ops = [*tokens, ";"]
        skip = False
        for tok in ops:
            if tok not in ("&&", ";"):
                words.append(tok)
                continue
            if words and not skip:
                o, e, code, cwd = self._simple(words, cwd, conn)
                out += o
                err += e
            words = []
            skip = tok == "&&" and code != 0
        return out, err, code

    def _simple(self, words: list[str], cwd: str, conn: _Connection | None
                ) -> tuple[bytes, bytes, int, str]:
        redirect = None
        merge_stderr = words[-3:] == ["2", ">&", "1"]
        if merge_stderr:
            words = words[:-3]
        if ">" in words:
            i = words.index(">")
            redirect, words = words[i + 1], words[:i]
            self.host_path(redirect).write_bytes(b"")  # the shell opens it before the command
        env: dict[str, str] = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            k, _, v = words.pop(0).partition("=")
            env[k] = v
        limit = None
        if words[:1] == ["timeout"]:
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in ("-k", "-s") else words[1:]
            limit, words = float(words[0]), words[1:]
        name, args = words[0], words[1:]
        out, err, code = b"", b"", 0
        if name == "cd":
            target = args[0] if args else "/"
            if self.host_path(target).is_dir():
                return b"", b"", 0, target
            return b"", f"cd: {target}: No such file or directory\n".encode(), 2, cwd
        if name == "getprop":
            props = self.profile["props"]
            if args:
                out = (str(props.get(args[0], "")) + "\n").encode()
            else:
                out = "".join(f"[{k}]: [{v}]\n" for k, v in props.items()).encode()
        elif name == "dumpsys":
            what = args[0] if args else ""
            text = self.profile.get("dumpsys", {}).get(what)
            if text is not None and what == "thermalservice" and self.throttled():
                text = re.sub(r"Thermal Status: \d", "Thermal Status: 3", text)
            if text is None:
                err, code = f"Can't find service: {what}\n".encode(), 0
            else:
                out = text.encode()
        elif name == "echo":
            out = (" ".join(args) + "\n").encode()
        elif name == "mkdir":
            for a in args:
                if not a.startswith("-"):
                    self.host_path(a).mkdir(parents=True, exist_ok=True)
        elif name in ("chmod", "sync"):
            for a in args[1:]:
                if not self.host_path(a).exists():
                    err += f"chmod: {a}: No such file or directory\n".encode()
                    code = 1
        elif name == "rm":
            recursive = any(a.startswith("-") and "r" in a for a in args)
            for a in args:
                if not a.startswith("-"):
                    p = self.host_path(a)
                    if p.is_file():
                        p.unlink()
                    elif p.is_dir() and recursive:
                        shutil.rmtree(p)
        elif name == "cat":
            for a in args:
                p = self.host_path(a)
                if p.is_file():
                    out += p.read_bytes()
                else:
                    err += f"cat: {a}: No such file or directory\n".encode()
                    code = 1
        elif name == "sha256sum":
            for a in args:
                p = self.host_path(a)
                if p.is_file():
                    out += f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {a}\n".encode()
                else:
                    err += f"sha256sum: {a}: No such file or directory\n".encode()
                    code = 1
        elif name == "ls":
            for a in args:
                p = self.host_path(a)
                if p.is_dir():
                    out += "".join(f"{c.name}\n" for c in sorted(p.iterdir())).encode()
                elif p.exists():
                    out += f"{a}\n".encode()
                else:
                    err += f"ls: {a}: No such file or directory\n".encode()
                    code = 1
        elif name == "sh" and args:
            out, err, code = self._script(args)
        elif name.endswith("benchmark_litert_model"):
            path = name if name.startswith("/") else f"{cwd.rstrip('/')}/{name}"
            if not self.host_path(path).is_file():
                return b"", f"/system/bin/sh: {name}: not found\n".encode(), 127, cwd
            out, err, code = self._benchmark_litert(args)
        elif name.endswith("executor_runner"):  # ExecuTorch's, run with the host's runtime
            if not self.host_path(name).is_file():
                return b"", f"/system/bin/sh: {name}: not found\n".encode(), 127, cwd
            self.executor_runner_calls.append(list(args))
            try:  # a stand-in bug answers the shell (a test fails) rather than hanging it
                out, err, code = executor_runner.run(args, self.host_path, cwd)
            except Exception as exc:
                out, err, code = b"", f"stand-in executor_runner crashed: {exc!r}\n".encode(), 1
        elif name.endswith("benchmark_model"):
            path = name if name.startswith("/") else f"{cwd.rstrip('/')}/{name}"
            if not self.host_path(path).is_file():
                return b"", f"/system/bin/sh: {name}: not found\n".encode(), 127, cwd
            out, err, code = self._benchmark(args, conn, limit, redirect)
        else:
            return b"", f"/system/bin/sh: {name}: not found\n".encode(), 127, cwd
        if redirect:
            with self.host_path(redirect).open("ab") as f:
                f.write(out + (err if merge_stderr else b""))
            out, err = b"", (b"" if merge_stderr else err)
        return out, err, code, cwd

    def _script(self, args: list[str]) -> tuple[bytes, bytes, int]:
        """Run a pushed shell script with the host's /bin/sh, its device paths under the
        sandbox; quantlab's outputs loop (``outputs.sh``) runs as :meth:`_outputs_loop`."""
        script = self.host_path(args[0])
        if not script.is_file():
            return b"", f"sh: {args[0]}: No such file or directory\n".encode(), 127
        if args[0].endswith("/outputs.sh"):
            return self._outputs_loop(args[1:])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QL_ROOT": str(self.sandbox)}
        proc = subprocess.run(["/bin/sh", str(script), *args[1:]], capture_output=True,
                              env=env, timeout=600, check=False)
        return proc.stdout, proc.stderr, proc.returncode

    def _outputs_loop(self, args: list[str]) -> tuple[bytes, bytes, int]:
        """``outputs.sh DIR N BYTES TOOL ARGS…`` as the script does it (its header says
        what), with each launch the benchmark_model stand-in's: the host's /bin/sh cannot
        start a stand-in that lives in this process. tests/test_android_outputs.py runs the
        script itself under /bin/sh with a stub tool, so the two are held to one contract."""
        folder, n, sizes, tool, rest = args[0], int(args[1]), args[2], args[3], args[4:]
        if not self.host_path(tool).is_file():
            return f"/system/bin/sh: {tool}: not found\n".encode(), b"", 127
        blob = bytearray()
        self.host_path(f"{folder}/outputs.bin").unlink(missing_ok=True)
        out = b""
        inputs = [(int(b), self.host_path(f"{folder}/input{k}.bin").read_bytes())
                  for k, b in enumerate(sizes.split(","))]  # dd seeks; read each file once
        for i in range(n):
            for k, (size, data) in enumerate(inputs):
                self.host_path(f"{folder}/sample{k}.bin").write_bytes(
                    data[i * size:(i + 1) * size])
            result = self.host_path(f"{folder}/out.bin")
            result.unlink(missing_ok=True)
            out, err, code = self._benchmark(rest, None)
            if code or not result.is_file():
                return (f"quantlab-outputs: sample {i}: exit {code}\n".encode() + out + err,
                        b"", code or 4)
            blob += result.read_bytes()
        self.host_path(f"{folder}/outputs.bin").write_bytes(bytes(blob))
        return f"quantlab-outputs: {n} samples\n".encode() + out, b"", 0

    # ------------------------------------------------------------------ benchmark_litert_model

    LITERT_FIXTURES: ClassVar[dict[str, str]] = {"cpu": "litert_synthetic_cpu_profile.txt",
                       "gpu": "litert_gpu_results_mlperf1134.txt"}
    """Replayed output per accelerator (a profile's ``litert_fixtures`` overrides it)."""

    def _benchmark_litert(self, args: list[str]) -> tuple[bytes, bytes, int]:
        """LiteRT's CompiledModel tool: records its argv, replays a recorded results block
        for the requested accelerator (``--use_npu`` fails: no NPU on a loopback device)."""
        self.benchmark_calls.append(list(args))
        flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        graph = flags.get("graph", "")
        if not self.host_path(graph).is_file():
            return b"", f"ERROR: Failed to load model {graph}\n".encode(), 1
        if flags.get("use_npu") == "true":
            return b"", b"ERROR: [litert_dispatch.cc:145] Failed to load dispatch library\n", 1
        accel = "gpu" if flags.get("use_gpu") == "true" else "cpu"
        fixture = {**self.LITERT_FIXTURES, **self.profile.get("litert_fixtures", {})}[accel]
        time.sleep(self.benchmark_seconds)
        return (FIXTURES / fixture).read_text().encode(), b"", 0

    # ------------------------------------------------------------------ benchmark_model

    def _value_files(self, flags: dict[str, str]) -> dict[str, str]:
        """``--input_layer_value_files``: ``name:path`` items split on ``,``; ``::`` in a
        name or path stands for ``:`` (benchmark_model's escaping)."""
        files = {}
        for item in filter(None, flags.get("input_layer_value_files", "").split(",")):
            i, at = 0, -1
            while i < len(item) - 1:
                if item[i] == ":":
                    if item[i + 1] == ":":
                        i += 1
                    else:
                        at = i
                i += 1
            files[item[:at].replace("::", ":")] = item[at + 1:].replace("::", ":")
        return files

    def _write_outputs(self, flags: dict[str, str], delegate: str) -> tuple[bytes, int]:
        """``--output_filepath``: the stand-in COMPUTES the outputs with host LiteRT (builtin
        kernels for ``cpu``, XNNPACK otherwise; ``gpu`` outputs rounded through float16 to
        stand in for the GPU's half precision) from the input files, and writes them as
        benchmark_model does: every output's raw bytes, in output order. A profile's
        ``numerics_faults`` ({delegate: "zeros"}) makes a delegate compute garbage."""
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from quantlab.harness.quantize.tflite_runner import quiet_native_stderr

        kwargs: dict[str, Any] = {}
        if delegate == "cpu":
            kwargs["experimental_op_resolver_type"] = \
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        fault = self.profile.get("numerics_faults", {}).get(delegate)
        try:
            graph = self.host_path(flags["graph"]).read_bytes()
            if fault and fault.startswith("wrong-kernel:"):
                graph = _wrong_kernel(graph, *fault.split(":", 1)[1].split("=", 1))
            with quiet_native_stderr():  # LiteRT's "INFO: Created … XNNPACK" line, which
                interp = Interpreter(model_content=graph, **kwargs)  # would land in the
                interp.allocate_tensors()  # output of the process that hosts this phone
        except (OSError, ValueError, RuntimeError) as exc:
            return f"ERROR: Failed to construct interpreter ({exc})\n".encode(), 1
        names = [n for n in flags.get("input_layer", "").split(",") if n]
        files = self._value_files(flags)
        rng = np.random.default_rng(0)
        for j, d in enumerate(interp.get_input_details()):
            path = files.get(names[j]) if j < len(names) else None
            want = int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
            if path is None:
                data = rng.integers(0, 255, want, dtype=np.uint8).tobytes()
            else:
                host = self.host_path(path)
                if not host.is_file():
                    return (f"ERROR: Failed to read the input_layer_value_file:{path}\n"
                            .encode(), 134)
                data = host.read_bytes()
                if len(data) != want:
                    return (f"ERROR: The size of {path} is {len(data)} bytes. It should be "
                            f"{want} bytes.\n".encode(), 134)
            interp.set_tensor(d["index"], np.frombuffer(data, dtype=d["dtype"])
                              .reshape(d["shape"]))
        interp.invoke()
        outs = []
        for d in interp.get_output_details():
            out = interp.get_tensor(d["index"]).copy()
            if delegate == "gpu" and out.dtype == np.float32:
                out = out.astype(np.float16).astype(np.float32)
            if fault == "zeros":
                out = np.zeros_like(out)
            outs.append(out)
        if fault == "zero-class-0":
            _lose_class_0(outs)
        self.host_path(flags["output_filepath"]).write_bytes(b"".join(o.tobytes() for o in outs))
        return b"", 0

    def _benchmark(self, args: list[str], conn: _Connection | None,
                   limit: float | None = None, log: str | None = None
                   ) -> tuple[bytes, bytes, int]:
        """Replay a recorded output (see the module docstring); ``log`` is the file its
        output is redirected to, written as the real tool prints: the lines up to the
        measured-run line when the timed loop starts, the rest when it ends."""
        self.benchmark_calls.append(list(args))
        failing = bool(self.fail_launches_from
                       and len(self.benchmark_calls) >= self.fail_launches_from)
        flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        graph = flags.get("graph", "")
        if not self.host_path(graph).is_file():
            return b"", f"ERROR: Could not open '{graph}'.\nFailed to mmap model {graph}\n"\
                .encode(), 1
        if flags.get("use_gpu") == "true":
            delegate = "gpu"
        elif flags.get("use_nnapi") == "true":
            delegate = "nnapi"
        elif flags.get("use_hexagon") == "true":
            delegate = "hexagon"
        elif "external_delegate_path" in flags:
            delegate = "qnn"
        elif flags.get("use_xnnpack") == "false":
            delegate = "cpu"
        else:
            delegate = "xnnpack"
        load = self.profile.get("battery_sysfs", {}).get("load")
        startup = self.profile.get("startup") or {}  # process start, delegate init
        battery = self.sandbox / "sys/class/power_supply/battery"
        fixture = self.profile["fixtures"].get(delegate)
        text = (FIXTURES / fixture).read_text() if fixture else ""
        if self.throttle_after_s is not None and self._throttle_clock is None:
            self._throttle_clock = time.monotonic()  # the schedule starts with this launch
        warm = self._cached(flags, delegate, graph)
        self.starts.append((delegate, warm))
        if warm:
            text = self._warm(text)
        if self.throttled():
            text = self._scaled(text)
            for cpu, khz in self.profile.get("cpufreq_khz", {}).items():
                freq = self.sandbox / "sys/devices/system/cpu" / cpu / "cpufreq"
                (freq / "scaling_cur_freq").write_text(f"{int(khz / self.throttle_factor)}\n")
            for path, hz in self.profile.get("gpufreq_hz", {}).items():
                if self.host_path(path).is_file():
                    self.host_path(path).write_text(f"{int(hz / self.throttle_factor)}\n")
        marker = text.rfind("Running benchmark for at least")
        head = text[:text.index("\n", marker) + 1] if marker >= 0 and log and not failing \
            else ""
        try:
            for name, value in startup.get("battery_sysfs", {}).items():
                (battery / name).write_text(f"{value}\n")
            time.sleep(float(startup.get("seconds", 0.0)))
            for name, value in (load or {}).items():
                (battery / name).write_text(f"{value}\n")
            if head and log:  # the warm-up is done: the timed loop starts
                with self.host_path(log).open("a") as f:
                    f.write(head)
            seconds = max(self.benchmark_seconds, float(flags.get("min_secs", "0")))
            if self.drop_next_benchmarks > 0:
                self.drop_next_benchmarks -= 1
                time.sleep(min(seconds, 0.2))
                self.go_away(self.down_for_s)
                raise ConnectionError("dropped by the test")
            if limit is not None and seconds > limit:  # toybox timeout kills it: exit 124
                time.sleep(limit)
                return b"STARTING!\n", b"", 124
            time.sleep(seconds)
        finally:
            for name in {**startup.get("battery_sysfs", {}), **(load or {})}:
                value = self.profile["battery_sysfs"][name]
                (battery / name).write_text(f"{value}\n")
        if failing:  # it ran under load for its time, then failed
            return b"", b"ERROR: Failed to invoke the interpreter (the test failed it)\n", 1
        if fixture is None:
            return b"", f"ERROR: {delegate} delegate is not available\n".encode(), 1
        if flags.get("output_filepath") and not self.profile.get("ignores_output_filepath"):
            err, code = self._write_outputs(flags, delegate)
            if code:
                return b"", err, code
            text += STAND_IN_NOTE.format(delegate=delegate)
        profile_file = flags.get("op_profiling_output_file")
        if profile_file and flags.get("enable_op_profiling") == "true":
            table = self.profile.get("profile_fixture")
            if table:
                self.host_path(profile_file).write_text((FIXTURES / table).read_text())
        return text[len(head):].encode(), b"", 0
