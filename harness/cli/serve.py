"""Command: serve — the read-only web dashboard over the results store (docs/serve.md).

The web framework (FastAPI, uvicorn) comes with the ``quantlab[serve]`` extra and is
imported inside the command only, so ``quantlab --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    err_console,
    handle_errors,
    results_location,
)
from quantlab.harness.errors import UserError

if TYPE_CHECKING:
    import socket

    from quantlab.harness.store import Store


def register(app: typer.Typer) -> None:
    """Add serve to the app."""
    app.command("serve")(serve)


def _check_extra() -> None:
    """A one-line UserError naming the extra when the web framework is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UserError(f"quantlab serve needs the web framework ({exc.name or exc} is not "
                        "installed)", hint="pip install 'quantlab[serve]'") from None


def _open_store(location: str) -> Store:
    """The store, opened without changing it (an older schema is refused, not upgraded)."""
    from quantlab.harness.store import DB_FILENAME, Store

    if "://" not in location and not (Path(location) / DB_FILENAME).is_file():
        raise UserError(f"--results {location}: no results store there (no {DB_FILENAME})",
                        hint="run quantlab bench or quantlab demo first, or pass --results "
                        "with the folder or postgresql:// URL of a store")
    return Store.open(location, migrate=False)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free one), or a one-line UserError."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})",
                        hint="use 127.0.0.1 (the default) or 0.0.0.0") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"--port {port} on {host}: {exc.strerror or exc}",
                        hint="pick another --port (0 picks a free one)") from None
    sock.listen(128)
    return sock


@handle_errors
def serve(
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Anything but loopback needs the lab token "
        "(--token-file).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port to listen on (0: a free one).")] = 8765,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", help="The lab's token file (mode 0600); every request must then carry "
        "the token. Required beyond loopback. Default there: $QUANTLAB_LAB_TOKEN or "
        "~/.quantlab/lab-token.", show_default=False)] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="The lab head HOST:PORT: the lab page then shows each device live "
        "(up/down, battery, thermal state, the job running now).", show_default=False)] = None,
    tls_dir: Annotated[str | None, typer.Option(
        "--tls-dir", help="With --cluster: the lab's mutual-TLS folder.",
        show_default=False)] = None,
    node_ip: Annotated[str | None, typer.Option(
        "--node-ip", help="With --cluster: this host's address in the lab.",
        show_default=False)] = None,
    refresh: Annotated[float, typer.Option("--refresh", min=1.0, help="Seconds between the "
                                           "lab page's refreshes.")] = 5.0,
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a read-only web dashboard of the store: lab, runs, one run, comparisons, trends
    (and their JSON endpoints) until Ctrl-C."""
    _check_extra()
    import uvicorn

    from quantlab.harness.serve.app import create_app
    from quantlab.harness.serve.auth import is_loopback, require_token_beyond_loopback

    token = require_token_beyond_loopback(host, token_file, token_file is not None)
    store = _open_store(results_location(results))
    live = None
    if cluster:
        from quantlab.harness.serve.lab import cluster_source

        live = cluster_source(cluster, token_file, tls_dir, node_ip)
    sock = _listen(host, port)
    app = create_app(store, token=token, live=live, refresh_s=refresh,
                     loopback_only=is_loopback(host))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    where = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{bound}/"
    guard = "lab token required" if token else "loopback only"
    if json_out:
        sys.stdout.write(json.dumps({"url": where, "host": host, "port": bound,
                                     "store": store.location, "read_only": True,
                                     "auth": "token" if token else "loopback"}) + "\n")
        sys.stdout.flush()
    err_console.print(f"quantlab serve: {where} (listening on {host}:{bound}) · store "
                      f"{store.location} · read-only · {guard} · Ctrl-C stops it",
                      soft_wrap=True, markup=False, highlight=False)
    config = uvicorn.Config(app, log_level="info" if verbose else "warning",
                            access_log=verbose, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
