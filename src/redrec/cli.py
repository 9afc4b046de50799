"""The ``redrec`` command line: thin click commands over the library.

Data goes to stdout, messages to stderr. A redrec error prints ``error: <message>`` on one
line and exits 1; a usage error exits 2; Ctrl-C exits 130 after cleaning up.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from redrec.config import Settings
from redrec.exceptions import RedrecError

__all__ = ["main"]


class RedrecGroup(click.Group):
    """A click group that turns redrec errors into one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedrecError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError on a bad environment variable
        raise click.UsageError(f"bad environment setting: {exc}") from None


@contextmanager
def open_store() -> Iterator[Any]:
    from redrec.runtime import connect

    store = connect(settings())
    try:
        yield store
    finally:
        store.close()


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=None, default=_json_default))
    else:
        click.echo(text if text is not None else json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


@click.group(cls=RedrecGroup)
@click.version_option(package_name="redrec")
def main() -> None:
    """redrec: online recommendations on Redis vector search.

    With no REDIS_URL, redrec runs its own embedded Redis with its data under
    REDREC_HOME (default ~/.redrec). `redrec server start` keeps one running so that
    commands share it; otherwise each command starts and stops one over the same data.
    """


# -- server ------------------------------------------------------------------------------


@main.group(cls=RedrecGroup)
def server() -> None:
    """Manage the long-lived embedded Redis."""


@server.command("start")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def server_start(as_json: bool) -> None:
    """Start the embedded Redis in the background (data kept in REDREC_HOME)."""
    from redrec.server import start_daemon

    s = settings()
    info = start_daemon(s.home, s.data_dir)
    data = {"running": True, "host": info.host, "port": info.port, "pid": info.pid,
            "data_dir": info.data_dir}
    emit(data, as_json, f"redis running on {info.host}:{info.port} (pid {info.pid}, data in "
         f"{info.data_dir})")


@server.command("stop")
def server_stop() -> None:
    """Stop the embedded Redis; its data stays in REDREC_HOME."""
    from redrec.server import stop_daemon

    if stop_daemon(settings().home):
        click.echo("stopped", err=True)
    else:
        click.echo("not running", err=True)


@server.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def server_status(as_json: bool) -> None:
    """Say whether the embedded Redis is running (exit 0) or not (exit 3)."""
    from redrec.server import daemon_status

    s = settings()
    info = daemon_status(s.home)
    if info is None:
        emit({"running": False}, as_json, "not running")
        sys.exit(3)
    emit({"running": True, "host": info.host, "port": info.port, "pid": info.pid,
          "data_dir": info.data_dir}, as_json,
         f"running on {info.host}:{info.port} (pid {info.pid}, data in {info.data_dir})")


# -- indexes -----------------------------------------------------------------------------


@main.group(cls=RedrecGroup)
def index() -> None:
    """Create, describe, list and drop search indexes."""


@index.command("create")
@click.argument("definition", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing index (documents kept).")
def index_create(definition: str, overwrite: bool) -> None:
    """Create an index from a YAML definition (RedisVL IndexSchema format)."""
    from redrec.store import IndexSpec

    spec = IndexSpec.from_yaml(definition)
    with open_store() as store:
        store.create_index(spec, overwrite=overwrite)
    click.echo(f"created index {spec.name}", err=True)


@index.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def index_describe(name: str, as_json: bool) -> None:
    """Show an index's definition and counts."""
    with open_store() as store:
        info = store.index(name).describe()
    emit(info, as_json)


@index.command("list")
def index_list() -> None:
    """List index names."""
    with open_store() as store:
        for name in store.list_indexes():
            click.echo(name)


@index.command("drop")
@click.argument("name")
@click.option("--delete-documents", is_flag=True, help="Also delete the indexed documents.")
def index_drop(name: str, delete_documents: bool) -> None:
    """Drop an index."""
    with open_store() as store:
        store.drop_index(name, delete_documents=delete_documents)
    click.echo(f"dropped index {name}", err=True)


@main.command("demo")
def demo() -> None:
    """The main job: embedded Redis, the books sample, recommendations and search."""
    from redrec.demo import run_demo

    run_demo(settings())


def _register_optional() -> None:
    """Attach command groups whose modules exist (each is an optional part)."""
    import importlib

    for module, attr in (
        ("redrec.cli_catalog", "register"),
        ("redrec.cli_faces", "faces"),
        ("redrec.cli_engine", "register"),
        ("redrec.cli_learn", "register"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        obj = getattr(mod, attr)
        if isinstance(obj, click.Command):
            main.add_command(obj)
        else:
            obj(main)


_register_optional()


if __name__ == "__main__":  # pragma: no cover
    main()
