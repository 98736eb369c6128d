"""Raw runner output: ``quantlab show RUN --raw [JOB] [--file NAME]`` and ``quantlab gc``."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    results_location,
)
from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    from quantlab.harness.store import JobEntry, Store


def register(app: typer.Typer) -> None:
    """Add ``gc`` to the app (``show --raw`` lives with ``show``)."""
    app.command("gc")(gc)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _pick_job(entries: tuple[JobEntry, ...], job: str) -> JobEntry:
    matches = [e for e in entries if e.job.job_id.startswith(job)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"job {job}: not in this run", hint="see quantlab show RUN --raw")
    raise UserError(f"job {job}: ambiguous ({len(matches)} jobs match)", hint="give more of the id")


def show_raw(store: Store, run_id: str, job: str | None, file: str | None,
             json_out: bool) -> None:
    """List a run's raw files (all jobs, or one job), or print one file's bytes.

    With a job that has exactly one raw file, or with ``--file NAME``, the file itself
    goes to stdout byte for byte (``--json``: its metadata and content).
    """
    from rich.table import Table

    record = store.load_run(run_id)
    entries = record.entries if job is None else (_pick_job(record.entries, job),)
    if file is not None and job is None:
        raise UserError("--file needs a job", hint="quantlab show RUN --raw JOB --file NAME")
    if job is not None:
        files = entries[0].raw.raw_files if entries[0].raw else ()
        chosen = [f for f in files if f.name == file] if file is not None else (
            list(files) if len(files) == 1 else [])
        if file is not None and not chosen:
            names = ", ".join(f.name for f in files) or "none"
            raise UserError(f"job {entries[0].job.job_id}: no raw file {file!r}",
                            hint=f"its raw files: {names}")
        if chosen:
            f = chosen[0]
            data = store.read_raw(f.sha256)
            if json_out:
                try:
                    content, encoding = data.decode("utf-8"), "utf-8"
                except UnicodeDecodeError:
                    content, encoding = base64.b64encode(data).decode("ascii"), "base64"
                print_json({"run_id": record.run.run_id, "job_id": entries[0].job.job_id,
                            **_file_dict(f), "encoding": encoding, "content": content})
            else:
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
                if f.truncated:
                    err_console.print(f"[yellow]note:[/] {f.name} was cut to the cap of "
                                      f"{f.cap_bytes} bytes ({f.original_size_bytes} bytes in "
                                      "all)", soft_wrap=True)
            return
    rows: list[dict[str, Any]] = []
    for e in entries:
        for f in e.raw.raw_files if e.raw else ():
            rows.append({"job_id": e.job.job_id, "label": e.job.label(), **_file_dict(f)})
    if json_out:
        print_json({"run_id": record.run.run_id, "location": store.raw.where,
                    "raw_files": rows})
        return
    table = Table(title=f"Raw files of run {record.run.run_id}", title_justify="left")
    for col in ("job", "name", "type", "size", "sha256"):
        table.add_column(col, overflow="fold", max_width=40)
    for r in rows:
        cut = f" [yellow](cut at {_size(r['cap_bytes'])}, was {_size(r['original_size_bytes'])})"\
              "[/]" if r["truncated"] else ""
        table.add_row(f"{r['job_id']}\n[dim]{Path(r['label'].split(' · ')[0]).name}[/]",
                      r["name"], r["media_type"], _size(r["size_bytes"]) + cut,
                      r["sha256"][:16])
    console.print(table)
    if not rows:
        err_console.print("no raw files kept for " + ("this job" if job else "this run"))
    elif job is not None:
        err_console.print(f"print one with [bold]quantlab show {record.run.run_id} --raw "
                          f"{entries[0].job.job_id} --file NAME[/]")
    else:
        err_console.print(f"print one with [bold]quantlab show {record.run.run_id} --raw "
                          "JOB --file NAME[/]")


def _file_dict(f: Any) -> dict[str, Any]:
    return {"name": f.name, "sha256": f.sha256, "size_bytes": f.size_bytes,
            "media_type": f.media_type, "truncated": f.truncated,
            "original_size_bytes": f.original_size_bytes, "cap_bytes": f.cap_bytes}


@handle_errors
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")]
    = False,
    grace: Annotated[float, typer.Option(
        "--grace", min=0.0, help="Keep unreferenced raw files younger than this many seconds "
        "(a running bench may be about to reference them).")] = 3600.0,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Remove raw runner output that no stored result references; say how much it freed."""
    from quantlab.harness.store import Store

    store = Store.open(results_location(results))
    report = store.gc_raw(dry_run=dry_run, grace_s=grace)
    if json_out:
        print_json(report.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"{report.location}: {verb} {report.removed} unreferenced raw file(s), "
                  f"{'would free' if dry_run else 'freed'} {_size(report.freed_bytes)} "
                  f"({report.freed_bytes} bytes); kept {report.kept} referenced "
                  f"({_size(report.kept_bytes)})", soft_wrap=True)
    if report.young:
        err_console.print(f"[dim]kept {report.young} unreferenced file(s) younger than "
                          f"{grace:g} s ({_size(report.young_bytes)}): a run may be writing "
                          "them; --grace 0 removes them[/]", soft_wrap=True)
    if report.missing:
        err_console.print(f"[yellow]warning:[/] {len(report.missing)} raw file(s) referenced by "
                          f"results are missing from {report.location}", soft_wrap=True)
