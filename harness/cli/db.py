"""``quantlab db``: the results database's schema (migrate, status)."""

from __future__ import annotations

import typer

from quantlab.harness.cli.common import (
    JsonOpt,
    ResultsOpt,
    VerboseOpt,
    console,
    handle_errors,
    print_json,
    results_location,
)

db_app = typer.Typer(help="The results database (SQLite folder or postgresql:// URL).",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to the app."""
    db_app.command("migrate")(migrate)
    db_app.command("status")(status)
    app.add_typer(db_app, name="db")


@handle_errors
def migrate(
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Create or upgrade the results database schema to this quantlab's version."""
    from quantlab.harness.store import HEAD_REVISION, Store, redact_url
    from quantlab.harness.store.migrate import revision_at

    location = results_location(results)
    before = revision_at(location)
    store = Store.open(location, migrate=True)  # refuses a schema newer than this quantlab
    after = store.current_revision()
    store.close()
    data = {"location": redact_url(location), "from": before, "to": after, "head": HEAD_REVISION}
    if json_out:
        print_json(data)
    elif before == after:
        console.print(f"{redact_url(location)}: schema up to date ({after})")
    else:
        console.print(f"{redact_url(location)}: migrated {before or 'empty'} → {after}")


@handle_errors
def status(
    results: ResultsOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the schema revision of the results database."""
    from quantlab.harness.store import HEAD_REVISION, redact_url
    from quantlab.harness.store.migrate import revision_at

    location = results_location(results)
    current = revision_at(location)
    data = {"location": redact_url(location), "revision": current, "head": HEAD_REVISION,
            "up_to_date": current == HEAD_REVISION}
    if json_out:
        print_json(data)
    else:
        state = "up to date" if current == HEAD_REVISION else "needs quantlab db migrate"
        console.print(f"{redact_url(location)}: schema {current} ({state}; this quantlab: "
                      f"{HEAD_REVISION})")
