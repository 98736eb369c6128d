"""Lab pieces that need no cluster: the token, TLS files, ids, the actor shell, CLI errors."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quantlab.harness.errors import (
    DeviceDisconnected,
    DeviceTimeout,
    DeviceUnusable,
    JobFailed,
    UserError,
)
from quantlab.harness.lab.actor import (
    DeviceActor,
    error_payload,
    pack_model,
    raise_payload,
    store_in_cache,
)
from quantlab.harness.lab.host import lab_device_id
from quantlab.harness.lab.ray_processes import (
    HEALTH_CHECK_ENV,
    NodeOptions,
    head_command,
    head_env,
    node_command,
)
from quantlab.harness.lab.security import LabSecurity, check_token, create_token, security
from quantlab.harness.records import Job, ModelRef, Settings, to_dict

ROOT = Path(__file__).resolve().parents[1]


def test_token_is_created_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = create_token(tmp_path / "lab" / "token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text()) == 64
    with pytest.raises(FileExistsError):
        create_token(path)
    assert security(str(path), None).token_path == path.resolve()


def test_readable_token_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = create_token(tmp_path / "token")
    path.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users") as err:
        check_token(path)
    assert "chmod 600" in err.value.one_line()
    with pytest.raises(UserError, match="no such file"):
        check_token(tmp_path / "missing")


def test_security_env_turns_on_token_and_tls(tmp_path: Path) -> None:
    token = create_token(tmp_path / "token")
    assert LabSecurity(token).env()["RAY_AUTH_MODE"] == "token"
    tls = tmp_path / "tls"
    tls.mkdir()
    with pytest.raises(UserError, match=r"(node\.key|ca\.crt) missing"):
        security(str(token), str(tls))
    for name in ("ca.crt", "node.crt", "node.key"):
        (tls / name).write_text("x")
    env = security(str(token), str(tls)).env()
    assert env["RAY_USE_TLS"] == "1" and env["RAY_TLS_CA_CERT"].endswith("ca.crt")
    assert env["RAY_AUTH_TOKEN_PATH"] == str(token.resolve())
    head = head_env(LabSecurity(token))
    assert all(head[k] == v for k, v in HEALTH_CHECK_ENV.items())


def test_a_lab_without_tls_turns_off_tls_left_by_an_earlier_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One process that talked to a TLS lab and then to one without TLS (the Python API, a
    test session) must not keep the first lab's TLS settings: Ray would wait ten minutes
    for a GCS that never answers the TLS handshake."""
    for key in ("RAY_USE_TLS", "RAY_TLS_CA_CERT", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY"):
        monkeypatch.delenv(key, raising=False)
    token = create_token(tmp_path / "token")
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.crt", "node.crt", "node.key"):
        (tls / name).write_text("x")
    monkeypatch.setattr(os, "environ", dict(os.environ))  # apply() writes the real environ
    security(str(token), str(tls)).apply()
    assert os.environ["RAY_USE_TLS"] == "1"
    plain = LabSecurity(token)
    plain.apply()
    assert os.environ["RAY_USE_TLS"] == "0"
    assert not any(k.startswith("RAY_TLS_") for k in os.environ)
    assert plain.env()["RAY_USE_TLS"] == "0"  # children started from a TLS shell too


def test_ray_commands_declare_device_resources() -> None:
    opts = NodeOptions(node_ip="10.0.0.5", node_manager_port=7000)
    cmd = node_command("head:6379", {"device:sim@a": 1.0}, opts)
    assert json.loads(cmd[cmd.index("--resources") + 1]) == {"device:sim@a": 1.0}
    assert cmd[cmd.index("--node-manager-port") + 1] == "7000" and "--block" in cmd
    head = head_command(6380, NodeOptions())
    assert "--head" in head and "--include-dashboard=false" in head


def test_simulator_ids_are_made_unique_per_host() -> None:
    assert lab_device_id("sim", "sim", "bench-3") == "sim@bench-3"
    assert lab_device_id("R58M123", "android", "bench-3") == "R58M123"


def test_errors_cross_hosts_as_the_same_class() -> None:
    with pytest.raises(DeviceDisconnected) as err:
        raise_payload(error_payload(DeviceDisconnected("slp-1", "usb reset")), "slp-1@a")
    assert err.value.device_id == "slp-1@a" and err.value.message == "slp-1@a: usb reset"
    with pytest.raises(DeviceTimeout):
        raise_payload(error_payload(DeviceTimeout("x", "slow")), "x@a")
    with pytest.raises(JobFailed, match="refused"):
        raise_payload(error_payload(JobFailed("runtime refused")), "x@a")
    with pytest.raises(UserError, match="bad"):
        raise_payload(error_payload(UserError("bad", hint="h")), "x@a")
    with pytest.raises(DeviceUnusable, match="not authorized") as unusable:
        raise_payload(error_payload(DeviceUnusable("R58", "R58 is not authorized")), "R58@a")
    assert unusable.value.device_id == "R58@a"  # the dispatcher stops that device's queue


def _job(path: Path, device_id: str = "slp-1@hostA") -> Job:
    data = path.read_bytes()
    return Job(ModelRef(str(path), hashlib.sha256(data).hexdigest(), len(data), "tflite"),
               device_id, "sim", "cpu", 1, Settings(repeats=2))


def test_actor_shell_maps_ids_and_uses_the_host_cache(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_LAB_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model bytes")
    job = _job(model)
    actor = DeviceActor("lab_agents:SleepAgent", {"count": 1, "sleep_s": 0}, "slp-1",
                        "slp-1@hostA", "hostA")
    described = actor.describe()
    assert described["device"]["id"] == "slp-1@hostA" and described["device"]["host"] == "hostA"
    assert actor.supports(to_dict(job)) == (True, "")
    # nothing cached and no bytes sent: the shell asks for them
    assert actor.run(to_dict(job), [], []) == {"missing": "m.tflite"}
    cached = tmp_path / "cache" / job.model.sha256 / "m.tflite"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(model.read_bytes())
    out = actor.run(to_dict(job), [], [])
    assert out["result"]["job_id"] == job.job_id  # the controller's id, not the local one
    assert out["result"]["runner"]["device"] == "slp-1"
    assert out["result"]["init_ms"] == len(b"model bytes")
    status = actor.status()  # type: ignore[operator]
    assert status["jobs_done"] == 1 and status["current"] is None
    assert actor.ping()["device_id"] == "slp-1@hostA"  # type: ignore[operator]


def test_actor_shell_returns_device_faults_as_data(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_LAB_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"abc")
    job = _job(model, "fake-a")
    cached = tmp_path / "cache" / job.model.sha256 / "m.tflite"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"abc")
    actor = DeviceActor("fake_agent:ScriptedAgent", {"faults": {"fake-a": 1}}, "fake-a",
                        "fake-a", "hostB")
    out = actor.run(to_dict(job), [], [])
    assert out["error"]["type"] == "DeviceDisconnected"
    assert actor.status()["last_error"] == "fake-a: connection reset"  # type: ignore[operator]
    assert "result" in actor.run(to_dict(job), [], [])


# ---------------------------------------------------------------------------- the host cache


def _tar(*members: tuple[str, str, bytes | str]) -> bytes:
    """A tar with (kind, name, data or link target) members: file, dir, sym, hard, fifo."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = payload if isinstance(payload, str) else ""
            tar.addfile(info)
    return buf.getvalue()


SHA = "ab" * 32


def test_cache_refuses_a_malformed_sha256_or_name(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_LAB_CACHE", str(tmp_path / "cache"))
    data = b"model bytes"
    good = hashlib.sha256(data).hexdigest()
    assert store_in_cache(good, "m.tflite", data).read_bytes() == data
    for bad in ("../../etc", good.upper(), good[:63], good + "0", f"{good[:62]}/x", "",
                "../" + good[3:]):
        with pytest.raises(JobFailed, match="not 64 lowercase hex digits"):
            store_in_cache(bad, "m.tflite", data)
    for name in ("..", ".", "a/b.tflite", "..\\x.tflite", ""):
        with pytest.raises(JobFailed, match="not a plain file name"):
            store_in_cache(good, name, data)
    with pytest.raises(JobFailed, match="do not match sha256"):
        store_in_cache(SHA, "m.tflite", data)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [good]


def test_cache_unpacks_a_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTLAB_LAB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src" / "m.mlpackage"
    (src / "Data").mkdir(parents=True)
    (src / "Data" / "weights.bin").write_bytes(b"w" * 600)
    (src / "Manifest.json").write_text("{}")
    target = store_in_cache(SHA, "m.mlpackage", pack_model(src))
    assert target == tmp_path / "cache" / SHA / "m.mlpackage"
    assert (target / "Data" / "weights.bin").read_bytes() == b"w" * 600
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.mlpackage"]  # no staging left


@pytest.mark.parametrize(("members", "problem"), [
    ([("file", "/etc/m.mlpackage/x", "x")], "an absolute path"),
    ([("dir", "m.mlpackage", b""), ("file", "m.mlpackage/../../evil", "x")], "'..'"),
    ([("dir", "m.mlpackage", b""), ("sym", "m.mlpackage/link", "/etc/passwd")],
     "a link or special file"),
    ([("dir", "m.mlpackage", b""), ("sym", "m.mlpackage/inner", "Manifest.json")],
     "a link or special file"),
    ([("file", "m.mlpackage/a", "x"), ("hard", "m.mlpackage/b", "m.mlpackage/a")],
     "a link or special file"),
    ([("dir", "m.mlpackage", b""), ("fifo", "m.mlpackage/pipe", b"")], "not a file"),
    ([("file", "other/x", "x")], "outside m.mlpackage/"),
])
def test_cache_refuses_unsafe_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       members: list[tuple[str, str, bytes | str]],
                                       problem: str) -> None:
    monkeypatch.setenv("QUANTLAB_LAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(JobFailed, match=problem):
        store_in_cache(SHA, "m.mlpackage", _tar(*members))
    left = [p for p in (tmp_path / "cache").rglob("*")]
    assert left == [tmp_path / "cache" / SHA]  # nothing unpacked, no staging folder left
    assert not (tmp_path / "evil").exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("QUANTLAB_CLUSTER",)}
    return subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    out = _cli("lab", "status")
    assert out.returncode == 2 and "no lab address" in out.stderr
    token = create_token(tmp_path / "token")
    token.chmod(0o640)
    out = _cli("lab", "join", "--address", "127.0.0.2:1", "--token-file", str(token))
    assert out.returncode == 2 and "readable by other users" in out.stderr
    assert "Traceback" not in out.stderr
