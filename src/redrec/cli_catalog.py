"""CLI commands for catalogues: ingest, similar, search, within, catalog delete/rebuild."""

from __future__ import annotations

import json
from typing import Any

import click

from redrec.cli import RedrecGroup, emit, open_store

__all__ = ["register"]

_FILTER_HELP = (
    "Pre-filter, repeatable and ANDed: field=value (a|b for any of), field!=value, "
    "field>=n, field<n, field~words, field@lon,lat,5km."
)


def _filters(spec: Any, exprs: tuple[str, ...], where: str | None) -> Any:
    from redrec.exceptions import InvalidInput
    from redrec.store.filters import parse_cli_filters

    parsed = parse_cli_filters(spec, list(exprs))
    if where:
        try:
            raw = json.loads(where)
        except ValueError as exc:
            raise InvalidInput(f"--where is not valid JSON: {exc}") from None
        parsed = raw if parsed is None else {"and": [parsed, raw]}
    return parsed


def _print_matches(matches: list[Any], as_json: bool, show: tuple[str, ...]) -> None:
    if as_json:
        emit([{"id": m.id, "score": m.score, "distance": m.distance, "fields": m.fields,
               "reasons": list(m.reasons)} for m in matches], True)
        return
    if not matches:
        click.echo("no results", err=True)
    for rank, m in enumerate(matches, 1):
        label = "  ".join(str(m.fields.get(f, "")) for f in show if f in m.fields)
        dist = f"  distance={m.distance:.4f}" if m.distance is not None else ""
        click.echo(f"{rank:>3}. {m.id:<12} score={m.score:.4f}{dist}  {label}")


def _common(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
    f = click.option("--where", help="A JSON filter object (see the docs).")(f)
    f = click.option("--filter", "filter_exprs", multiple=True, help=_FILTER_HELP)(f)
    f = click.option("--offset", default=0, show_default=True, type=int, help="Skip this many.")(f)
    f = click.option("-k", "--k", "k", default=10, show_default=True, type=int,
                     help="How many results.")(f)
    f = click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")(f)
    return f


def _show_fields(cat: Any) -> tuple[str, ...]:
    names = [n for n in ("title", "name", "author") if n in cat.mapping.fields]
    return tuple(names or list(cat.mapping.fields)[:2])


def register(main: click.Group) -> None:
    @main.command("ingest")
    @click.argument("source")
    @click.option("--mapping", "mapping_path", type=click.Path(dir_okay=False),
                  help="Mapping YAML (required unless SOURCE is 'books').")
    @click.option("--recreate", is_flag=True, help="Drop and re-create the index first.")
    @click.option("--prune", is_flag=True, help="Delete stored items missing from SOURCE.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
    def ingest_cmd(source: str, mapping_path: str | None, recreate: bool, prune: bool,
                   as_json: bool) -> None:
        """Embed and load a catalogue: SOURCE is 'books' (the bundled sample), a directory
        of .json files, a .json, .jsonl or .csv file."""
        from redrec.apps.books import BOOKS_DIR
        from redrec.catalog import ingest

        if source == "books" and mapping_path is None:
            mapping_path, source = str(BOOKS_DIR / "mapping.yaml"), str(BOOKS_DIR / "items")
        if mapping_path is None:
            raise click.UsageError("--mapping is required for a catalogue other than 'books'")
        with open_store() as store:
            report = ingest(store, mapping_path, source, recreate=recreate, prune=prune,
                            progress=not as_json)
        d = report.as_dict()
        emit(d, as_json, (
            f"{d['index']}: {d['written']} items written ({d['read']} read, {d['deleted']} "
            f"deleted); embeddings computed {d['computed']}, from cache {d['cached']}; "
            f"embed {d['embed_s']}s, write {d['write_s']}s, total {d['total_s']}s"))

    @main.command("similar")
    @click.argument("item")
    @click.option("--by", type=click.Choice(["text", "image", "both"]), default="text",
                  show_default=True, help="Which vectors to compare.")
    @_common
    def similar_cmd(item: str, by: str, catalog: str | None, k: int, offset: int,
                    filter_exprs: tuple[str, ...], where: str | None, as_json: bool) -> None:
        """Items like ITEM (a key such as book:26415, or an id)."""
        from redrec.catalog.registry import resolve_item

        with open_store() as store:
            cat, item_id = resolve_item(store, item, catalog)
            filters = _filters(cat.index.spec, filter_exprs, where)
            matches = cat.similar(item_id, k, by=by, filters=filters,  # type: ignore[arg-type]
                                  offset=offset)
            _print_matches(matches, as_json, _show_fields(cat))

    @main.command("search")
    @click.argument("text", required=False)
    @click.option("--image", type=str, help="Visual search: an image path or URL.")
    @_common
    def search_cmd(text: str | None, image: str | None, catalog: str | None, k: int,
                   offset: int, filter_exprs: tuple[str, ...], where: str | None,
                   as_json: bool) -> None:
        """Semantic search for TEXT, or visual search with --image."""
        from redrec.catalog.registry import find_catalog

        if (text is None) == (image is None):
            raise click.UsageError("give either TEXT or --image")
        with open_store() as store:
            cat = find_catalog(store, catalog)
            filters = _filters(cat.index.spec, filter_exprs, where)
            if text is not None:
                matches = cat.search(text, k, filters=filters, offset=offset)
            else:
                matches = cat.search_image(image, k, filters=filters, offset=offset)
            _print_matches(matches, as_json, _show_fields(cat))

    @main.command("within")
    @click.argument("item", required=False)
    @click.option("--text", help="Measure from this sentence instead of an item.")
    @click.option("--radius", type=float, required=True, help="Maximum distance (cosine: 0-2).")
    @click.option("--by", type=click.Choice(["text", "image"]), default="text", show_default=True)
    @_common
    def within_cmd(item: str | None, text: str | None, radius: float, by: str,
                   catalog: str | None, k: int, offset: int, filter_exprs: tuple[str, ...],
                   where: str | None, as_json: bool) -> None:
        """Every item within --radius of ITEM or --text (a range query), nearest first."""
        from redrec.catalog.registry import find_catalog, resolve_item

        if (item is None) == (text is None):
            raise click.UsageError("give either ITEM or --text")
        with open_store() as store:
            if item is not None:
                cat, item_id = resolve_item(store, item, catalog)
            else:
                cat, item_id = find_catalog(store, catalog), None
            filters = _filters(cat.index.spec, filter_exprs, where)
            matches = cat.within(radius, item_id=item_id, text=text, by=by,  # type: ignore[arg-type]
                                 filters=filters, offset=offset, limit=k)
            _print_matches(matches, as_json, _show_fields(cat))

    @main.group("catalog", cls=RedrecGroup)
    def catalog_group() -> None:
        """Manage ingested catalogues."""

    @catalog_group.command("list")
    def catalog_list() -> None:
        """Catalogues ingested into this Redis."""
        with open_store() as store:
            for name in store.list_meta("catalog"):
                click.echo(name)

    @catalog_group.command("delete")
    @click.argument("items", nargs=-1, required=True)
    @click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")
    def catalog_delete(items: tuple[str, ...], catalog: str | None) -> None:
        """Delete items (keys or ids) from a catalogue."""
        from redrec.catalog.registry import resolve_item

        with open_store() as store:
            removed = 0
            for ref in items:
                cat, item_id = resolve_item(store, ref, catalog)
                removed += cat.delete([item_id])
        click.echo(f"deleted {removed} item(s)", err=True)

    @catalog_group.command("rebuild")
    @click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")
    @click.option("--mapping", "mapping_path", type=click.Path(dir_okay=False),
                  help="A changed mapping (new fields or HNSW parameters) to rebuild with.")
    def catalog_rebuild(catalog: str | None, mapping_path: str | None) -> None:
        """Rebuild the index over the stored items; queries keep being answered."""
        from redrec.catalog import Catalog
        from redrec.catalog.registry import find_catalog, register

        with open_store() as store:
            cat = find_catalog(store, catalog)
            if mapping_path:
                cat = Catalog(store, mapping_path)
            index = cat.rebuild()
            register(store, cat.mapping)
            click.echo(f"rebuilt {index.name} ({index.count()} items)", err=True)
