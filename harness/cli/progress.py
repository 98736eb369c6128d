"""Rich progress on stderr while jobs run: one line per device plus an overall bar."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from quantlab.harness.cli.common import err_console
from quantlab.harness.records import Job
from quantlab.harness.redact import redact_text


class RichReporter:
    """Implements :class:`quantlab.harness.dispatch.Reporter` with rich progress bars."""

    def __init__(self, total_jobs: int, verbose: bool = False) -> None:
        self.verbose = verbose
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[phase]}", style="dim"),
            console=err_console,
            transient=True,
        )
        self.overall = self.progress.add_task("jobs", total=total_jobs, phase="")
        self.devices: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def _task(self, job: Job) -> TaskID:
        with self.lock:
            if job.device_id not in self.devices:
                self.devices[job.device_id] = self.progress.add_task(
                    job.device_id, total=1.0, phase="")
            return self.devices[job.device_id]

    def job_started(self, job: Job, attempt: int) -> None:
        """Show which job a device is on."""
        retry = f" (attempt {attempt})" if attempt > 1 else ""
        self.progress.update(self._task(job), completed=0,
                             phase=f"{job.model.path.rsplit('/', 1)[-1]} {job.delegate} "
                                   f"{job.threads}t{retry}")

    def job_progress(self, job: Job, phase: str, fraction: float | None) -> None:
        """Move the device's bar."""
        base = f"{job.model.path.rsplit('/', 1)[-1]} {job.delegate} {job.threads}t: {phase}"
        if fraction is None:
            self.progress.update(self._task(job), phase=base)
        else:
            self.progress.update(self._task(job), completed=fraction, phase=base)

    def job_finished(self, job: Job, status: str, error: str | None) -> None:
        """Count the job; print failures at once."""
        self.progress.advance(self.overall)
        self.progress.update(self._task(job), completed=1.0, phase=status)
        if status == "failed":
            self.progress.console.print(f"[red]failed[/] {job.label()}: {error}", soft_wrap=True)
        elif status == "skipped":
            self.progress.console.print(f"[yellow]skipped[/] {job.label()}: {error}",
                                        soft_wrap=True)

    def note(self, message: str) -> None:
        """Print a note above the bars."""
        if "Traceback" in message and not self.verbose:
            message = message.strip().splitlines()[-1]
        self.progress.console.print(f"[yellow]note:[/] {redact_text(message)}", soft_wrap=True)
