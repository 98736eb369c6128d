"""Linux gateways over SSH (agents/linux/) against a real OpenSSH server on loopback.

The gateway is this machine: sshd on 127.0.0.x with throwaway keys (tests/sshd.py), the
gateway's Python is this test run's interpreter. Without ``/usr/sbin/sshd`` the tests
that need it skip (they fail under CI=true: .ci/run installs openssh-server).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import require_tool
from sshd import SSHD, SshServer

from quantlab.agents.linux import remote as ssh_remote
from quantlab.agents.linux.agent import SshAgent
from quantlab.agents.linux.hosts import HostsFileError, parse_address, parse_hosts
from quantlab.agents.linux.results import hwmon_energy
from quantlab.agents.linux.session import Session, worker_bundle
from quantlab.harness.errors import JobFailed
from quantlab.harness.models import model_ref
from quantlab.harness.records import Job, Settings

ROOT = Path(__file__).resolve().parent.parent
QUANTLAB = [sys.executable, "-m", "quantlab"]


# --------------------------------------------------------------------------- hosts file


G = '[[gateway]]\nname = "a"\n'


@pytest.mark.parametrize(("text", "message"), [
    (G, "gateway[0] (a).address: missing"),
    (G + 'address = "pi@h:22"\nport = 22\n', "gateway[0] (a).port: unknown key"),
    ('[[gateway]]\nname = "a"\naddress = 7\n', "gateway[0] (a).address: expected a str, got 7"),
    ('[[gateway]]\nname = "a"\naddress = "pi@h:99999"\n', "gateway[0] (a).address: port 99999"),
    (G + 'address = "h"\nsudo = "yes"\n', "gateway[0] (a).sudo: expected a bool"),
    (G + 'address = "h"\nhot_c = true\n', "gateway[0] (a).hot_c: expected a number"),
    ('[[gateway]]\nname = "a"\naddress = "h"\n[[gateway]]\nname = "a"\naddress = "g"\n',
     "gateway[1] (a).name: 'a' is used twice"),
    ('[[gateway]]\nname = "a b"\naddress = "h"\n', "gateway[0] (a b).name: 'a b' is not a valid"),
    ("[gateways]\n", "gateways: unknown key"),
    ("[[gateway]\n", "not valid TOML"),
])  # fmt: skip
def test_hosts_file_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(HostsFileError) as err:
        parse_hosts(text, "hosts.toml")
    line = err.value.one_line()
    assert message in line and "\n" not in line and line.startswith("hosts.toml: ")


def test_hosts_file_parses_defaults_and_addresses() -> None:
    gws = parse_hosts('[[gateway]]\nname = "pi-kitchen"\naddress = "pi@10.0.0.7:2222"\n'
                      'identity = "~/.ssh/id_ed25519"\nhot_c = 70\n'
                      '[[gateway]]\nname = "jet"\naddress = "[fe80::1]"\n')
    assert gws[0].device_id == "ssh:pi-kitchen" and gws[0].user == "pi"
    assert (gws[0].host, gws[0].port, gws[0].hot_c) == ("10.0.0.7", 2222, 70.0)
    assert gws[0].known_hosts == "~/.ssh/known_hosts" and gws[0].python is None
    assert (gws[1].user, gws[1].host, gws[1].port) == (None, "fe80::1", None)
    assert parse_address("box") == (None, "box", None)


def test_missing_default_hosts_file_means_no_gateways(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTLAB_HOSTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert SshAgent().discover() == []
    monkeypatch.setenv("QUANTLAB_HOSTS", str(tmp_path / "nope.toml"))
    with pytest.raises(HostsFileError, match="no such hosts file"):
        SshAgent().discover()


def test_hwmon_energy_subtracts_the_idle_baseline() -> None:
    rows = [{"phase": "baseline", "t_s": t / 10, "channel": "hwmon.ina219.power1",
             "value": 2_000_000.0, "unit": "uW"} for t in range(5)]
    rows += [{"phase": "load", "t_s": 1 + t / 10, "channel": "hwmon.ina219.power1",
              "value": 5_000_000.0, "unit": "uW"} for t in range(5)]
    energy, reason, kept = hwmon_energy(rows, latency_ms=4.0)
    assert reason is None and energy is not None and len(kept) == 10
    assert energy.method == "hwmon-power" and energy.baseline_mw == pytest.approx(2000)
    assert energy.mj_per_inference == pytest.approx(3000 * 4.0 / 1000)
    flat = [dict(r, value=2_000_000.0) for r in rows]
    assert hwmon_energy(flat, 4.0)[0] is None
    assert "not above the idle baseline" in (hwmon_energy(flat, 4.0)[1] or "")


# --------------------------------------------------------------------------- real sshd


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    """A real sshd on 127.0.0.x (stopped, with every session it started, at teardown)."""
    require_tool("sshd", "install Debian's openssh-server", found=SSHD.exists())
    server = SshServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert server.proc is None


@pytest.fixture(scope="module")
def hosts(sshd: SshServer) -> Path:
    """A hosts file: a ready gateway, one without LiteRT, one with a wrong host key, one
    down, one without its Python."""
    path = sshd.dir / "hosts.toml"
    path.write_text(
        sshd.hosts_entry("gw", python=sys.executable)
        + sshd.hosts_entry("nolitert", python="/usr/bin/python3")
        + sshd.hosts_entry("wrongkey", python=sys.executable, known_hosts=sshd.wrong_known_hosts)
        + sshd.hosts_entry("down", python=sys.executable, port=1)
        + sshd.hosts_entry("nopython", python="/opt/no-such/python3"))
    return path


def _quantlab(hosts: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", QUANTLAB_HOSTS=str(hosts), COLUMNS="250")
    return subprocess.run([*QUANTLAB, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def test_devices_lists_gateways_with_health(hosts: Path) -> None:
    proc = _quantlab(hosts, "devices", "--json")
    assert proc.returncode == 0, proc.stderr
    found = {d["id"]: d for d in json.loads(proc.stdout)["devices"]}
    gw = found["ssh:gw"]
    assert gw["platform"] == "linux" and gw["state"] == "ready", gw
    assert gw["abi"] == os.uname().machine and gw["cores"] == os.cpu_count()
    h = gw["health"]
    assert h["reachable"] and h["auth"] == "ok" and h["worker_ready"] is True
    assert h["worker_deps"]["ai-edge-litert"] and h["mem_available_mb"] > 0
    assert h["python_path"] == sys.executable and h["cpu_model"]
    lit = found["ssh:nolitert"]
    assert lit["state"] == "unavailable" and "ai-edge-litert" in lit["health"]["missing"]
    assert "quantlab gateway provision nolitert --install" in lit["state_hint"]
    bad = found["ssh:wrongkey"]
    assert bad["state"] == "unauthorized" and "host key" in bad["state_hint"]
    assert "refused" in bad["state_hint"]
    assert found["ssh:down"]["state"] == "offline"
    assert "unreachable" in found["ssh:down"]["state_hint"]
    nopy = found["ssh:nopython"]
    assert nopy["state"] == "unavailable"
    assert "python /opt/no-such/python3 not found on ssh:nopython" in nopy["state_hint"]
    table = _quantlab(hosts, "devices")
    assert "ssh:gw" in table.stdout and "GB free" in table.stdout


def test_wrong_host_key_is_refused_in_one_line_exit_2(hosts: Path, sshd: SshServer) -> None:
    proc = _quantlab(hosts, "gateway", "provision", "wrongkey")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "host key" in lines[0] and "refused" in lines[0]
    assert str(sshd.wrong_known_hosts) in lines[0] and "never accepts" in lines[0]
    # nothing was accepted on the way: the file still holds only the wrong key
    assert len(sshd.wrong_known_hosts.read_text().splitlines()) == 1


def test_provision_reports_what_is_missing(hosts: Path) -> None:
    ok = _quantlab(hosts, "gateway", "provision", "gw", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ready"] and report["missing"] == [] and report["python"] == sys.executable
    assert any(r.startswith("ai-edge-litert") for r in report["requirements"])
    missing = _quantlab(hosts, "gateway", "provision", "nolitert", "--json")
    assert missing.returncode == 1, missing.stderr
    report = json.loads(missing.stdout)
    assert not report["ready"] and "ai-edge-litert" in report["missing"]
    assert any("--install" in n for n in report["notes"])
    unknown = _quantlab(hosts, "gateway", "provision", "nope")
    assert unknown.returncode == 2 and "gateway nope: not in" in unknown.stderr


def test_bench_on_gateway_with_profile_ops(hosts: Path, cnn_tflite: Path,
                                           tmp_path: Path) -> None:
    proc = _quantlab(hosts, "bench", str(cnn_tflite), "--device", "ssh:gw", "--repeats", "2",
                     "--iterations", "25", "--profile-ops", "--numerics", "--json",
                     "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads(proc.stdout)["results"]
    assert r["status"] == "ok", r["error"]
    assert r["device"]["platform"] == "linux" and r["device"]["id"] == "ssh:gw"
    assert [len(s) for s in r["samples_ms"]] == [25, 25]
    assert r["latency_ms"]["count"] == 50 and r["init_ms"] > 0
    assert len(r["ops"]) >= 5 and r["ops_model_ms"] > 0
    assert r["runner"]["via"] == "ssh" and r["runner"]["arch"] == os.uname().machine
    assert r["runner"]["runtime"] == "litert"  # every job names its runtime
    assert r["runner"]["setup_ms"] > 0 and len(r["runner"]["pids"]) == 2
    assert r["thermal"]["before"] is not None
    # --numerics on a gateway: not checked there yet, and the delegate matrix says so
    (row,) = json.loads(_quantlab(hosts, "delegates", "--json", "--results",
                                  str(tmp_path)).stdout)["rows"]
    assert row["numerics"] is None and "not checked on SSH gateways" in row["numerics_note"]


def test_dropped_connection_mid_job_is_retried(hosts: Path, sshd: SshServer, cnn_tflite: Path,
                                               tmp_path: Path) -> None:
    """Kill the sshd session serving the job while the worker measures: the agent raises a
    DeviceFault, the dispatcher waits for the gateway, retries, and the job ends ok."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", QUANTLAB_HOSTS=str(hosts))
    bench = subprocess.Popen(
        [*QUANTLAB, "bench", str(cnn_tflite), "--device", "ssh:gw", "--repeats", "1",
         "--iterations", "20", "--min-time", "3", "--json", "--results", str(tmp_path),
         "--retry-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    killed_worker = None
    try:
        deadline = time.monotonic() + 120
        while killed_worker is None and time.monotonic() < deadline:
            for session in sshd.sessions():
                try:
                    workers = [p for p in session.children(recursive=True)
                               if f"-m {ssh_remote.RUNNER_PACKAGE}" in " ".join(p.cmdline())]
                except psutil.Error:
                    continue
                if workers:
                    killed_worker = workers[0]
                    session.send_signal(signal.SIGKILL)  # the connection drops mid-job
                    break
            time.sleep(0.05)
        assert killed_worker is not None, "the worker never started on the gateway"
        out, err = bench.communicate(timeout=240)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert bench.returncode == 0, err
    data = json.loads(out)
    (r,) = data["results"]
    assert r["status"] == "ok" and r["attempts"] == 2, r
    (account,) = data["devices"]
    assert account["retries"] == 1 and "connection dropped" in account["faults"][0]
    # the gateway side noticed the dropped connection and ended the orphaned worker
    _, alive = psutil.wait_procs([killed_worker], timeout=10)
    assert not alive, "the worker of the dropped connection is still running"


def test_energy_and_hot_board_from_sysfs(sshd: SshServer, hosts: Path, cnn_tflite: Path,
                                         tmp_path: Path) -> None:
    """hwmon power sensor and thermal zone as sysfs trees: board power with the idle baseline
    subtracted, and a hot board flagged."""
    hwmon = tmp_path / "hwmon" / "hwmon0"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina219\n")
    power = hwmon / "power1_input"
    power.write_text("2000000\n")
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("91000\n")
    own = sshd.dir / "energy.toml"
    own.write_text(sshd.hosts_entry("gw", python=sys.executable,
                                    extra="cooldown_s = 0\nenergy_baseline_s = 0.5"))
    agent = SshAgent(own, sysfs_roots={"hwmon": str(tmp_path / "hwmon"),
                                       "thermal": str(tmp_path / "thermal")})
    (device,) = agent.discover()
    job = Job(model_ref(cnn_tflite), device.id, "linux", "xnnpack", 1,
              Settings(repeats=1, iterations=20, min_time_s=1.5, energy=True))
    stop = threading.Event()

    def worker_running() -> bool:
        for p in sshd.descendants():
            try:
                if f"-m {ssh_remote.RUNNER_PACKAGE}" in " ".join(p.cmdline()):
                    return True
            except psutil.Error:  # ended between listing and reading
                continue
        return False

    def load_when_measuring() -> None:  # the board draws more once the worker runs
        while not stop.is_set():
            if worker_running():
                power.write_text("5000000\n")
                return
            time.sleep(0.02)

    th = threading.Thread(target=load_when_measuring, daemon=True)
    th.start()
    try:
        raw = agent.run(device, job, lambda phase, fraction: None)
    finally:
        stop.set()
        th.join(5)
    assert raw.status == "ok", raw.error
    assert raw.energy is not None, raw.energy_unavailable_reason
    assert raw.energy.method == "hwmon-power"
    assert raw.energy.baseline_mw == pytest.approx(2000)
    assert raw.energy.detail["load_mw"] == pytest.approx(5000)
    assert {s.phase for s in raw.energy_samples} == {"baseline", "load"}
    assert raw.thermal_before["temperature_c"] == 91.0
    assert any("gateway hot: 91 °C" in w for w in raw.warnings), raw.warnings
    names = {o.name for o in raw.raw_outputs}
    assert {"measure-1.json", "gateway-events.jsonl"} <= names, names


def test_missing_litert_fails_the_job_with_the_reason(sshd: SshServer, cnn_tflite: Path
                                                      ) -> None:
    own = sshd.dir / "nolitert.toml"
    own.write_text(sshd.hosts_entry("bare", python="/usr/bin/python3"))
    agent = SshAgent(own)
    (device,) = agent.discover()
    job = Job(model_ref(cnn_tflite), device.id, "linux", "xnnpack", 1, Settings(repeats=1))
    ok, reason = agent.supports(device, job)
    assert not ok and "ai-edge-litert" in reason and "provision bare" in reason
    raw = agent.run(device, job, lambda phase, fraction: None)  # run anyway: the worker says
    assert raw.status == "failed" and "No module named" in (raw.error or "")
    assert "quantlab gateway provision bare --install" in (raw.error or "")


def test_disk_full_gateway_fails_the_job_before_pushing(sshd: SshServer, cnn_tflite: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    own = sshd.dir / "full.toml"
    own.write_text(sshd.hosts_entry("full", python=sys.executable, workdir=sshd.dir / "full"))
    agent = SshAgent(own)
    (device,) = agent.discover()

    async def one_mib(self: Session) -> int:  # what statvfs says on a full SD card
        return 2**20

    monkeypatch.setattr(Session, "free_bytes", one_mib)
    job = Job(model_ref(cnn_tflite), device.id, "linux", "xnnpack", 1, Settings(repeats=1))
    with pytest.raises(JobFailed, match=r"ssh:full: disk full: 1 MB free in .*full"):
        agent.run(device, job, lambda phase, fraction: None)
    assert not list((sshd.dir / "full").glob("models/*"))


def test_oom_killed_worker_is_named(tmp_path: Path, cnn_tflite: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway side tells an OOM kill (SIGKILL while the kernel's oom_kill count rose)
    from any other crash."""
    counts = iter(range(1000))
    monkeypatch.setattr(ssh_remote, "_oom_kills", lambda: next(counts))
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    settings = dataclasses.asdict(Settings(iterations=10, min_time_s=60))
    (jobdir / "job.json").write_text(json.dumps({
        "payload": {"model": str(cnn_tflite), "delegate": "xnnpack", "threads": 1,
                    "settings": settings},
        "repeats": 1, "timeout_s": 120}))
    code = tmp_path / "code"  # what a gateway receives
    for name, data in worker_bundle()[1].items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_bytes(data)
    runner = ssh_remote.Runner(jobdir, code)

    def oom_killer() -> None:
        deadline = time.monotonic() + 60
        while runner.proc is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        if runner.proc is not None:
            os.killpg(runner.proc.pid, signal.SIGKILL)

    threading.Thread(target=oom_killer, daemon=True).start()
    out = runner.worker("measure", 0, time.monotonic() + 120, None)
    assert out["kind"] == "oom", out
    assert "killed by the kernel's OOM killer while" in out["error"]


def test_sustained_run_on_a_gateway_reads_its_sysfs(sshd: SshServer, cnn_tflite: Path,
                                                    tmp_path: Path) -> None:
    """bench --sustained on a gateway: one runner process in windows there, each window with
    the gateway's thermal zone and CPU frequencies (sysfs trees standing in for its /sys)."""
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48500\n")
    freq = tmp_path / "cpu" / "cpu0" / "cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_cur_freq").write_text("1500000\n")
    gpu = tmp_path / "gpu" / "class" / "devfreq" / "ff9a0000.gpu"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("400000000\n")
    own = sshd.dir / "sustained.toml"
    own.write_text(sshd.hosts_entry("gw", python=sys.executable, extra="cooldown_s = 0"))
    agent = SshAgent(own, sysfs_roots={"thermal": str(tmp_path / "thermal"),
                                       "cpu": str(tmp_path / "cpu"),
                                       "gpu": str(tmp_path / "gpu")})
    (device,) = agent.discover()
    job = Job(model_ref(cnn_tflite), device.id, "linux", "xnnpack", 1,
              Settings(repeats=3, warmup=2, sustained_s=1.0, window_s=0.25))
    raw = agent.run(device, job, lambda phase, fraction: None)
    assert raw.status == "ok", raw.error
    windows = raw.sustained["windows"]
    assert len(windows) >= 4 and len(raw.samples_ms) == 1  # one process, no repeats
    assert all(w["temperatures_c"] == {"cpu-thermal": 48.5} for w in windows)
    assert all(w["cpu_freq_khz"] == {"cpu0": 1500000} for w in windows)
    assert all(w["gpu_freq_hz"] == {"ff9a0000.gpu": 400000000} for w in windows)
    assert raw.sustained["sensors_note"] == "no battery"
    assert raw.startup["cold"]["load_ms"] > 0


# --------------------------------------------------------------------------- ExecuTorch


def test_pte_on_the_gateway_runs_executorch_or_says_why_not(sshd: SshServer, small_pte: Path
                                                           ) -> None:
    """A .pte job on a gateway whose Python has ExecuTorch (this one: the test's interpreter)
    runs ExecuTorch's runner there, a fresh process per repeat, with an ETDump per-op profile;
    a gateway without it refuses the job naming what to install."""
    pte = small_pte
    own = sshd.dir / "et.toml"
    own.write_text(sshd.hosts_entry("et", python=sys.executable)
                   + sshd.hosts_entry("noet", python="/usr/bin/python3"))
    agent = SshAgent(own)
    devices = {d.id: d for d in agent.discover()}
    gw, bare = devices["ssh:et"], devices["ssh:noet"]
    assert gw.extra["executorch"] == "1.5.1" and "et-xnnpack" in gw.delegates
    job = Job(model_ref(pte), gw.id, "linux", "et-xnnpack", 1,
              Settings(repeats=2, iterations=5, warmup=1, profile_ops=True))
    assert agent.supports(gw, job) == (True, "")
    assert agent.supports(gw, dataclasses.replace(job, delegate="xnnpack"))[1].startswith(
        "delegate 'xnnpack' is LiteRT's: an ExecuTorch program runs on et-xnnpack")
    ok, why = agent.supports(bare, dataclasses.replace(job, device_id=bare.id))
    assert not ok and why.startswith("ExecuTorch is not installed for /usr/bin/python3 on "
                                     "ssh:noet: install the torch extra's pins there")
    raw = agent.run(gw, job, lambda phase, fraction: None)
    assert raw.status == "ok", raw.error
    assert (raw.runner["runtime"], raw.runner["version"], raw.runner["via"]) == \
        ("executorch", "1.5.1", "ssh")
    assert [len(s) for s in raw.samples_ms] == [5, 5]
    assert len(set(raw.runner["pids"])) == 2  # a fresh runner process per repeat
    assert any(op.kernel.startswith("Convolution") and op.delegate == "XNNPACK"
               for op in raw.ops)
    assert raw.ops_model_ms and raw.ops_model_ms > 0


def test_a_gateway_refuses_a_program_on_the_other_executorch_delegate(small_pte: Path,
                                                                      portable_pte: Path
                                                                      ) -> None:
    """As the simulator does: a program without XNNPACK calls is not measured under
    et-xnnpack's label, nor an XNNPACK program under et-portable's (the .pte's bytes say)."""
    from quantlab.harness.records import DeviceInfo

    gw = DeviceInfo("ssh:et", "linux", "gateway", cores=4,
                    delegates=("xnnpack", "cpu", "et-xnnpack", "et-portable"),
                    extra={"executorch": "1.5.1", "python": "python3"})
    agent = SshAgent(None)

    def why(pte: Path, delegate: str) -> str:
        return agent.supports(gw, Job(model_ref(pte), gw.id, "linux", delegate, 1,
                                      Settings()))[1]

    assert why(small_pte, "et-xnnpack") == why(portable_pte, "et-portable") == ""
    assert why(portable_pte, "et-xnnpack") == ("portable.pte has no XNNPACK delegate call "
                                               "(portable kernels only): it runs on et-portable")
    assert why(small_pte, "et-portable") == "net.pte delegates to XNNPACK: it runs on et-xnnpack"


def test_inputs_feed_a_pte_job_on_the_gateway(sshd: SshServer, small_pte: Path,
                                              tmp_path: Path) -> None:
    """--inputs for a .pte on a gateway: the .npz is pushed as for a .tflite and ExecuTorch's
    runner there runs on it (before, the job was refused); an array the program cannot take
    fails the job naming its shape."""
    import numpy as np

    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, x=np.ones((2, 3, 8, 8), np.float32))
    np.savez(bad, x=np.ones((1, 3, 5, 5), np.float32))
    own = sshd.dir / "et-inputs.toml"
    own.write_text(sshd.hosts_entry("et", python=sys.executable))
    agent = SshAgent(own)
    gw = agent.discover()[0]

    def job(inputs: Path) -> Job:
        return Job(model_ref(small_pte), gw.id, "linux", "et-xnnpack", 1,
                   Settings(repeats=1, iterations=3, warmup=1, inputs=str(inputs)))

    assert agent.supports(gw, job(good)) == (True, "")
    raw = agent.run(gw, job(good), lambda phase, fraction: None)
    assert raw.status == "ok", raw.error
    failed = agent.run(gw, job(bad), lambda phase, fraction: None)
    assert failed.status == "failed"
    assert "array 'x' has shape (1, 3, 5, 5), the program takes (1, 3, 8, 8)" in str(failed.error)


def test_provision_install_executorch_adds_the_torch_extras_pins(sshd: SshServer,
                                                                 tmp_path: Path) -> None:
    """gateway provision --install --executorch pip-installs torch and executorch at the
    torch extra's pins (torch's CPU build) after the worker's own requirements, and reports
    ExecuTorch's version. The gateway's venv python is a stand-in: its pip calls are logged
    (nothing is installed), and after them it is the test's interpreter, which has both."""
    workdir = tmp_path / "gw"
    (workdir / "venv" / "bin").mkdir(parents=True)
    log, done = tmp_path / "pip.log", tmp_path / "installed"
    stub = workdir / "venv" / "bin" / "python"
    stub.write_text(f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then\n'
                    f'  echo "$@" >> {log}; touch {done}; exit 0\nfi\n'
                    f'if [ -e {done} ]; then exec {sys.executable} "$@"; fi\n'
                    f'exec /usr/bin/python3 "$@"\n')
    stub.chmod(0o755)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(sshd.hosts_entry("fresh", workdir=workdir))
    proc = _quantlab(hosts, "gateway", "provision", "fresh", "--install", "--executorch",
                     "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ready"] and report["executorch"] == "1.5.1"
    base, extra = log.read_text().splitlines()
    assert "ai-edge-litert==2.3.0" in base and "torch" not in base
    assert extra.endswith("torch==2.13.0 executorch==1.5.1")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in extra
