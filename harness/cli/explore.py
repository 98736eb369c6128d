"""Command: explore — a job's per-op figures as Model Explorer overlays
(:mod:`quantlab.harness.report.explore`): latency, its change against a second job,
placement and a culprit result's SQNR, one node-data file each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    console,
    handle_errors,
    print_json,
    results_location,
)


def register(app: typer.Typer) -> None:
    """Add explore to the app."""
    app.command()(explore)


@handle_errors
def explore(
    job: Annotated[str, typer.Argument(help="Job id (or prefix, or RUN:JOB).")],
    out: Annotated[str, typer.Option("--out", help="Folder for the node-data files.")],
    vs: Annotated[str | None, typer.Option("--vs", help="A second job: per-op latency change "
                                           "(this job minus JOB).")] = None,
    culprit: Annotated[str | None, typer.Option("--culprit", help="A `quantlab culprit --json` "
                                                "result: per-op SQNR.")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Then start Model Explorer on the model "
                                        "with the overlays loaded and print its address "
                                        "(needs quantlab[explorer]; Ctrl-C stops it).")]
    = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="With --serve.")]
    = 8080,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write Model Explorer node-data files (per-op latency and share, latency change, placement,
    culprit SQNR) keyed by the node ids of Model Explorer's TFLite adapter; load them beside the
    model in Model Explorer (`model-explorer MODEL --node_data_paths=FILE,…`), or with --serve
    start it on them here."""
    from quantlab.harness.errors import UserError
    from quantlab.harness.report.diff import find_job
    from quantlab.harness.report.explore import read_culprit, write_overlays
    from quantlab.harness.store import Store

    if serve:
        try:
            import ai_edge_model_explorer_adapter  # noqa: F401
            import model_explorer  # noqa: F401
        except ImportError:
            raise UserError("--serve: Model Explorer is not installed",
                            hint="pip install 'quantlab[explorer]'") from None
    store = Store.open(results_location(results))
    a = find_job(store, job)
    b = find_job(store, vs) if vs else None
    found = read_culprit(Path(culprit)) if culprit else None
    files = write_overlays(Path(out), a, b, found)
    model = a.entry.job.model.path
    if json_out and not serve:
        print_json({"model": model, "files": {k: str(v) for k, v in files.items()}})
        return
    for name, path in files.items():
        console.print(f"{name}: {path}", soft_wrap=True)
    if not serve:
        console.print(f"[dim]model-explorer {model} --node_data_paths="
                      f"{','.join(str(p) for p in files.values())}[/]", soft_wrap=True)
        return
    _serve(model, list(files.values()), port)


def _serve(model: str, files: list[Path], port: int) -> None:
    """Model Explorer's own server on the model with every overlay loaded; it prints its
    address (with the model and node data in the URL) and runs until Ctrl-C."""
    from model_explorer import config, server

    cfg = config()
    cfg.add_model_from_path(path=str(Path(model).resolve()))
    for path in files:
        cfg.add_node_data_from_path(path=str(path.resolve()))
    server.start(host="localhost", port=port, config=cfg, no_open_in_browser=True)
