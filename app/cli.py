"""The ``sfmlops`` command line: thin commands that parse options and call the modules."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="sfmlops",
    help="Daily sales forecasting MLOps: local stack, data, ingestion, training, forecasts, API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def settings():  # noqa: ANN201 - Settings, imported lazily so --help stays fast
    """Load and validate the settings; a bad setting ends the command with its name."""
    from pydantic import ValidationError

    from app.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ())) or "settings"
            name = f"SFMLOPS_{loc.upper()}" if loc != "settings" else loc
            console.print(f"[red]configuration error[/red] {name}: {err.get('msg')}")
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB"


def print_status(rows) -> bool:  # noqa: ANN001
    table = Table(title="sfmlops local stack")
    for col in ("service", "address", "healthy", "pid", "resident memory"):
        table.add_column(col, justify="right" if col in ("pid", "resident memory") else "left")
    total = 0
    for row in rows:
        total += row.rss_bytes
        state = "[green]yes[/green]" if row.healthy else ("[yellow]no[/yellow]" if row.running else "[red]stopped[/red]")
        table.add_row(row.name, row.address, state, str(row.pid or "-"), _mb(row.rss_bytes) if row.pid else "-")
    table.add_row("[b]total[/b]", "", "", "", f"[b]{_mb(total)}[/b]")
    Console().print(table)
    return all(r.healthy for r in rows)


@app.command()
def up(
    with_airflow: Annotated[bool, typer.Option("--with-airflow", help="Also start Airflow standalone (needs `make airflow-setup`)")] = False,
) -> None:
    """Start the local stack (MiniStack, Kafka, PostgreSQL, MLflow, Ray head); reuse what already runs."""
    from app import stack

    s = settings()
    t0 = time.monotonic()
    try:
        with console.status("starting the local stack..."):
            stack.up(s, on_event=lambda n, r, sec: console.print(f"  {n:<9} {r} ({sec:.1f}s)"), with_airflow=with_airflow)
    except stack.StackError as exc:
        _fail(str(exc))
    console.print(f"stack up in {time.monotonic() - t0:.1f}s")
    print_status(stack.status(s))


@app.command()
def down() -> None:
    """Stop exactly the services `sfmlops up` started."""
    from app import stack

    stopped = stack.down(settings())
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status() -> None:
    """Show every service: address, health, pid, resident memory, and the total."""
    from app import stack

    if not print_status(stack.status(settings())):
        raise typer.Exit(1)


@app.command()
def data(
    path: Annotated[
        Optional[Path], typer.Option("--path", help="Folder with Kaggle train.csv(.gz) and store.csv; default: setting or synthetic")
    ] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Generate the synthetic dataset even if a path is set")] = False,
    load_db: Annotated[bool, typer.Option("--load-db/--no-load-db", help="Load store metadata into PostgreSQL")] = True,
) -> None:
    """Load (Kaggle files) or generate (synthetic) the dataset, validate it, write canonical parquet."""
    from app.data import prepare
    from app.data.validation import DataValidationError

    s = settings()
    folder = None if synthetic else (path or s.rossmann_dir)
    try:
        with console.status("loading and validating data..."):
            result = prepare(s, rossmann_dir=folder)
    except (DataValidationError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(
        f"{result.source}: {result.rows:,} rows, {result.stores:,} stores, {result.first_date}..{result.last_date}"
        f" -> {result.sales_path.parent}"
    )
    if load_db:
        from app.data.load import load_stores_table

        try:
            n = load_stores_table(s)
        except Exception as exc:  # noqa: BLE001 - the database is optional here
            console.print(f"[yellow]store metadata not loaded into PostgreSQL ({exc.__class__.__name__}: {exc}); run `sfmlops up` first[/yellow]")
        else:
            console.print(f"store metadata: {n:,} rows upserted into {s.table_stores}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
