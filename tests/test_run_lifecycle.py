"""Runs that neither lose nor double work: Ctrl-C inside ``quantlab.bench()`` ends
quantlab's own processes and none of the caller's."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.store import Store


def _workers_of_this_process() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "agents.sim_worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_in_bench_ends_quantlab_workers_and_spares_the_callers(
        cnn_tflite: Path, tmp_path: Path) -> None:
    import quantlab

    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    stop = threading.Event()

    def ctrl_c_once_a_worker_runs() -> None:
        while not stop.is_set():
            if _workers_of_this_process():
                _thread.interrupt_main()  # what a Ctrl-C in a notebook does
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=ctrl_c_once_a_worker_runs, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted"):
            quantlab.bench([cnn_tflite], device="sim", delegate="xnnpack,cpu", repeats=3,
                           min_time=2.0, results=tmp_path)
        assert mine.poll() is None, "quantlab ended a process it did not start"
        assert _workers_of_this_process() == []  # its own are gone
        runs = Store.open(str(tmp_path)).list_runs()
        assert runs[0]["status"] == "interrupted"
    finally:
        stop.set()
        mine.kill()
        mine.wait()
