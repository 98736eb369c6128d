"""The one measurement session: plan → start a run → dispatch its jobs → finish it.

Every command that measures goes through a :class:`Session`: :func:`quantlab.bench` and
``quantlab bench`` (with or without a plan file, and ``--resume``), autoquant's candidates,
the demo's bench step, ``ab``'s interleaved launches and ``import``'s hand-made result. Their
runs therefore follow one set of rules, written here once:

* a run belongs to the process that started or resumed it, which stamps a heartbeat while
  its jobs are measured (:mod:`quantlab.harness.store.owner`);
* a device that went away is waited for and its job launched again under the session's one
  :class:`~quantlab.harness.retry.RetryPolicy`;
* a store that cannot take a result stops that device, and the run closes ``incomplete``,
  never ``done``, while jobs are left unfinished: :meth:`Session.finish` says why and
  :meth:`Session.check` raises :class:`~quantlab.harness.errors.RunIncomplete`
  (``quantlab bench --resume`` finishes the run);
* a Ctrl-C stores the running jobs ``interrupted``, closes the run ``interrupted`` and
  raises :class:`RunInterrupted`, a ``KeyboardInterrupt``; only the processes quantlab
  started are ended.

The command line keeps its options, printing and exit codes (``RunIncomplete``: one line,
exit 1; ``RunInterrupted``: how to resume, exit 130).

::

    with Session.open("results") as session:
        devices = session.devices(["sim"])
        plan = session.plan(expand_models(["model.tflite"]), devices, settings=Settings())
        run_id = session.start(plan, devices, Settings())
        data = session.finish(run_id, session.dispatch(run_id, plan.jobs))
        session.check(data)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from quantlab.harness.errors import RunIncomplete, UserError

if TYPE_CHECKING:
    from quantlab.agents.base import Agent
    from quantlab.harness.dispatch import DeviceAccount, Reporter
    from quantlab.harness.plan import Fleet
    from quantlab.harness.records import DeviceInfo, Job, ModelRef, Plan, RawResult, Settings
    from quantlab.harness.retry import RetryPolicy
    from quantlab.harness.store import Store


class RunInterrupted(KeyboardInterrupt):
    """A Ctrl-C (or SIGTERM) stopped the run: it is stored ``interrupted`` with the jobs
    that finished, and ``quantlab bench --resume RUN_ID`` runs the others."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} interrupted; finished jobs are stored")
        self.run_id = run_id


def discover(cluster: str | None = None) -> Fleet:
    """Local devices (the simulator included), or with ``cluster`` a lab's devices."""
    from quantlab.harness.plan import discover as discover_local

    if not cluster:
        return discover_local()
    from quantlab.harness.lab.agent import lab_agents

    return discover_local(agents=lab_agents(cluster))


class Session:
    """A store, the devices to measure on and the rules every run made through it follows.

    ``fleet``: the devices (default: discovered on first use, a lab's with ``cluster``);
    ``retry``: the one retry policy of its runs; ``reporter``: what the user is told while
    jobs run (a command's progress display).
    """

    def __init__(self, store: Store, *, fleet: Fleet | None = None, cluster: str | None = None,
                 retry: RetryPolicy | None = None, reporter: Reporter | None = None) -> None:
        from quantlab.harness.retry import RetryPolicy

        self.store = store
        self.cluster = cluster
        self.retry = retry or RetryPolicy()
        self.reporter = reporter
        self._fleet = fleet

    @classmethod
    def open(cls, results: str | Path | None = None, **options: Any) -> Session:
        """A session on the store at ``results`` (a folder or ``postgresql://`` URL; default
        ``$QUANTLAB_RESULTS``, else ``./results``); ``options`` as for the constructor."""
        from quantlab._results import results_location
        from quantlab.harness.store import Store

        return cls(Store.open(results_location(results)), **options)

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def fleet(self) -> Fleet:
        """The devices this session measures on (discovered on first use)."""
        if self._fleet is None:
            self._fleet = discover(self.cluster)
        return self._fleet

    # ------------------------------------------------------------------ plan and start

    def devices(self, ids: Sequence[str]) -> list[DeviceInfo]:
        """The fleet's devices named by ``ids`` (``"all"``; none: the attached phones, else
        the simulator); a one-line :class:`UserError` for an unknown one."""
        from quantlab.harness.plan import select_devices

        return select_devices(self.fleet, list(ids))

    def plan(self, models: Sequence[ModelRef], devices: Sequence[DeviceInfo],
             delegates: Sequence[str] = (), threads: Sequence[int] = (1,), *,
             settings: Settings) -> Plan:
        """The jobs of ``models`` × ``devices`` × ``delegates`` × ``threads``, and those a
        device cannot run with the reason; runs nothing."""
        from quantlab.harness.plan import build_plan

        return build_plan(list(models), list(devices), self.fleet, list(delegates),
                          list(threads), settings)

    def start(self, plan: Plan, devices: Iterable[DeviceInfo], settings: Settings,
              tags: Iterable[str] = (), plan_text: str | None = None) -> str:
        """Store a new run with its planned jobs (``pending``) and skipped ones, owned by
        this process; returns its id."""
        from quantlab.harness.environment import new_run

        run = new_run(settings)
        self.store.create_run(run, plan, list(devices), tags=list(tags), plan_text=plan_text)
        return run.run_id

    def resume(self, run_id: str, force: bool = False) -> tuple[str, list[Job]]:
        """Take a stored run over to finish it (refused while its owner may still be
        measuring it; ``force`` for an owner known to be gone): its full id and the jobs
        left, set back to ``pending``. A device they need that is not attached is a
        :class:`UserError`, and the run is given back."""
        run_id = self.store.resolve_run_id(run_id)
        fleet = self.fleet
        jobs = self.store.reopen_run(run_id, force=force)
        missing = sorted({j.device_id for j in jobs} - {d.id for d in fleet.devices})
        if missing:
            self._close(run_id)  # give it back: stored incomplete, jobs left
            raise UserError(f"cannot resume {run_id}: device(s) {', '.join(missing)} not "
                            "attached", hint="attach them and try again")
        self.store.add_devices(run_id, [d for d in fleet.devices
                                        if d.id in {j.device_id for j in jobs}])
        return run_id, jobs

    # ------------------------------------------------------------------ measure

    def dispatch(self, run_id: str, jobs: Sequence[Job], reporter: Reporter | None = None
                 ) -> list[DeviceAccount]:
        """Run stored jobs on their devices (one worker per device, the run's heartbeat,
        the session's retry policy); results go into the store. Returns each device's
        account. After a Ctrl-C the run is stored ``interrupted`` and
        :class:`RunInterrupted` is raised."""
        from quantlab.harness.dispatch import Dispatcher, Interrupted

        dispatcher = Dispatcher(self.store, run_id, self.fleet, reporter or self.reporter,
                                retry=self.retry)
        try:
            return dispatcher.run(list(jobs))
        except Interrupted:
            self._close(run_id, interrupted=True)
            raise RunInterrupted(run_id) from None
        except Exception:  # close it: a run left 'running' by a live caller looks owned
            with contextlib.suppress(Exception):  # the store may be what failed
                self._close(run_id, interrupted=True)
            raise

    def interleave(self, run_id: str, job_a: Job, job_b: Job, launches: int,
                   reporter: Reporter | None = None) -> tuple[dict[str, list[RawResult]], bool]:
        """``ab``: ``launches`` launches of each job alternately (A B B A …) on their one
        device, each under the session's retry policy, on a worker thread with the run's
        heartbeat and Ctrl-C handling as :meth:`dispatch` has. Returns each job's launches
        (one-repeat results, in order) and whether a Ctrl-C stopped them; the caller stores
        what it keeps with :meth:`store_results` and closes the run with :meth:`finish`."""
        from quantlab.harness.ab import interleaved
        from quantlab.harness.dispatch import Dispatcher, Interrupted, NullReporter

        told = reporter or self.reporter or NullReporter()
        done: dict[str, list[RawResult]] = {job_a.job_id: [], job_b.job_id: []}
        dispatcher = Dispatcher(self.store, run_id, self.fleet, told, retry=self.retry)

        def work(agent: Agent, device: DeviceInfo) -> None:
            for job, raw in interleaved(agent, device, job_a, job_b, launches, retry=self.retry,
                                        cancel=dispatcher.cancel, note=told.note):
                done[job.job_id].append(raw)
                told.job_finished(job, raw.status, raw.error)
                if dispatcher.lost.is_set():  # taken over elsewhere: launch nothing more
                    return

        try:
            dispatcher.run_on(job_a.device_id, work)
        except Interrupted:
            return done, True
        return done, False

    def store_results(self, run_id: str, results: Sequence[tuple[Job, RawResult]]
                      ) -> list[DeviceAccount]:
        """Store results measured outside :meth:`dispatch` (``ab``'s merged launches, an
        imported log) as the dispatcher stores its own: a store that cannot take one stops
        there, leaving it and the rest unfinished, so :meth:`finish` closes the run
        ``incomplete`` and says why. Returns each device's account."""
        from quantlab.harness.dispatch import DeviceAccount
        from quantlab.harness.errors import QuantlabError

        accounts: dict[str, DeviceAccount] = {}
        for k, (job, raw) in enumerate(results):
            account = accounts.setdefault(job.device_id, DeviceAccount(job.device_id))
            try:
                self.store.save_result(run_id, job.job_id, raw)
            except Exception as exc:  # the store failed (disk full, a refused value)
                reason = (exc.one_line() if isinstance(exc, QuantlabError)
                          else f"internal error: {exc!r}")
                account.stopped, account.unfinished = reason, len(results) - k
                with contextlib.suppress(Exception):  # say so on the job, if it still can
                    self.store.set_status(run_id, job.job_id, "interrupted",
                                          f"not finished: {reason}")
                break
            if raw.status == "ok":
                account.ok += 1
            else:
                account.failed += 1
        return list(accounts.values())

    # ------------------------------------------------------------------ finish

    def _close(self, run_id: str, interrupted: bool = False) -> str | None:
        """How a run ends, decided here alone: ``interrupted`` when it was stopped, else
        ``done`` — which the store makes ``incomplete`` while jobs are unfinished. None
        when another process has taken the run over (nothing is changed)."""
        return self.store.finish_run(run_id, "interrupted" if interrupted else "done")

    def finish(self, run_id: str, accounts: Sequence[DeviceAccount] = (), *,
               interrupted: bool = False) -> dict[str, Any]:
        """Close the run and return it as ``quantlab bench --json`` prints it, with each
        device's account under ``devices``. A run left with jobs unfinished (a device
        stopped by a store error) is stored ``incomplete``, not ``done``, and
        ``incomplete`` in the JSON says why in one line (see :meth:`check`)."""
        from quantlab.harness.results import run_dict

        status = self._close(run_id, interrupted)
        data = run_dict(self.store.load_run(run_id))
        data["devices"] = [a.as_dict() for a in accounts]
        if status is None:
            data["incomplete"] = (f"run {run_id} was taken over by another quantlab (bench "
                                  "--resume --force); what this process measured is stored")
        elif status == "incomplete":
            left = sum(1 for r in data["results"] if r["status"] in ("pending", "running",
                                                                     "interrupted"))
            why = "; ".join(f"{a.device_id}: {a.stopped}" for a in accounts if a.stopped)
            data["incomplete"] = (f"run {run_id} is incomplete, {left} job(s) not finished"
                                  f"{f' ({why})' if why else ''}")
        return data

    @staticmethod
    def check(data: dict[str, Any], hint: str | None = None) -> None:
        """Raise :class:`~quantlab.harness.errors.RunIncomplete` when :meth:`finish` found
        the run ``incomplete``."""
        if "incomplete" in data:
            run_id = str(data["run_id"])
            raise RunIncomplete(run_id, str(data["incomplete"]),
                                hint=hint or f"fix that, then quantlab bench --resume {run_id}")

