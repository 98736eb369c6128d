"""Fault campaigns: does quantlab keep its promise when models are corrupt, phones drop off and
the controller is killed? Each campaign prints a table of outcomes (fault_common.py explains
the columns); the promise is zero in ``crash``, ``hang``, ``lost`` and ``duplicated``.

    .venv/bin/python benchmarks/fault_campaigns.py mutants      [-n 1000] [--timeout 10]
    .venv/bin/python benchmarks/fault_campaigns.py disconnects  [-n 50]
    .venv/bin/python benchmarks/fault_campaigns.py kills        [-n 20]
    .venv/bin/python benchmarks/fault_campaigns.py all --quick  # a smoke run of each

* ``mutants`` (fault_mutants.py): mutated real models through model identification, bench on
  the simulator and evaluate;
* ``disconnects`` (fault_disconnects.py): loopback phones under a real adb server whose
  connection is cut at random moments during a run;
* ``kills`` (fault_kills.py): ``quantlab bench`` SIGKILLed at random moments, then
  ``bench --resume``, until the run is complete; compared job for job with an
  uninterrupted run.

Every campaign is seeded (``--seed``): the same seed gives the same mutants, moments and
kills. ``--quick`` runs a small N of each on smaller plans (the smoke test in
tests/test_fault_campaigns.py).
Exit status 1 when any case crashed, hung, or lost or duplicated a result. Run the full
campaigns with ``nice -n 19`` on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fault_common as fc

FULL = {"mutants": 1000, "disconnects": 50, "kills": 20}
QUICK = {"mutants": 12, "disconnects": 3, "kills": 2}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen campaigns; 1 when one of them had a crash, hang, loss or duplicate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("campaign", choices=[*FULL, "all"])
    parser.add_argument("-n", type=int, default=None, help="cases (default: the full N, "
                        "or the quick N with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small N: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="bench --timeout per job (mutants)")
    parser.add_argument("--cli-every", type=int, default=None,
                        help="every Nth mutant also through the quantlab command "
                        "(default 25; 4 with --quick)")
    parser.add_argument("--seeds", default=None, help="mutants: seed models, comma-separated "
                        "from blazeface, wakeword, detector (default: all three; with --quick "
                        "blazeface,wakeword: the detector takes ~30 s to train)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (kept; "
                        "the demo detector built there is reused); default: a temp folder")
    parser.add_argument("--json", action="store_true", help="one JSON object per campaign")
    args = parser.parse_args(argv)
    names = list(FULL) if args.campaign == "all" else [args.campaign]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="quantlab-faults-") as tmp:
        work = args.work or Path(tmp)
        for name in names:
            n = args.n or (QUICK if args.quick else FULL)[name]
            folder = work / name
            folder.mkdir(parents=True, exist_ok=True)
            bad += run(name, n, args, folder)
    return 1 if bad else 0


def run(name: str, n: int, args: argparse.Namespace, work: Path) -> int:
    """One campaign; prints its table (or JSON) and returns its number of bad cases."""
    if name == "mutants":
        import fault_mutants

        every = args.cli_every or (4 if args.quick else 25)
        seeds = tuple((args.seeds or ("blazeface,wakeword" if args.quick else
                                      ",".join(fault_mutants.SEEDS))).split(","))
        tally, facts = fault_mutants.campaign(n, args.seed, args.timeout, work, every, seeds)
        title = (f"mutated models: {n} mutants of {', '.join(facts['seeds'])} "
                 f"(seed {args.seed}, --timeout {args.timeout:g}s), {facts['seconds']:.0f}s, "
                 f"{facts['mutants_per_s']} mutants/s")
        notes = [f"every {every}th mutant also through the quantlab command (CLI rows)"]
    elif name == "disconnects":
        import fault_disconnects

        tally, facts = fault_disconnects.campaign(n, args.seed, work, args.quick)
        title = (f"device disconnects: {n} runs on loopback phones under a real adb server, "
                 f"one connection cut per run (seed {args.seed}), {facts['seconds']:.0f}s")
        notes = facts.pop("notes", [])
    else:
        import fault_kills

        tally, facts = fault_kills.campaign(n, args.seed, work, args.quick)
        title = (f"SIGKILLs: bench killed {n} times at random moments, --resume after each "
                 f"(seed {args.seed}), {facts['seconds']:.0f}s")
        notes = facts.pop("notes", [])
    fc.emit(facts, args.json, title, tally, notes)
    return tally.bad()


if __name__ == "__main__":
    sys.exit(main())
