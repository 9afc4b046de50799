"""CLI commands for the online engine: track, recommend, user, worker."""

from __future__ import annotations

import json
from typing import Any

import click

from redrec.cli import emit, open_store

__all__ = ["register"]


def _json_arg(value: str | None, what: str) -> Any:
    from redrec.exceptions import InvalidInput

    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def register(main: click.Group) -> None:
    @main.command("track")
    @click.argument("user")
    @click.argument("item")
    @click.argument("event_type", metavar="TYPE")
    @click.option("--value", type=float, help="The rating, for TYPE=rating.")
    @click.option("--time", "timestamp", help="Epoch seconds or ISO 8601 (default: now).")
    @click.option("--context", help='Context as JSON, e.g. \'{"device": "mobile"}\'.')
    @click.option("--id", "event_id", help="Event id (replaying the same id changes nothing).")
    @click.option("--stream", is_flag=True, help="Put the event on the stream for workers "
                  "instead of applying it now.")
    @click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False),
                  help="Engine config YAML (saved for this catalogue).")
    @click.option("--json", "as_json", is_flag=True)
    def track_cmd(user: str, item: str, event_type: str, value: float | None,
                  timestamp: str | None, context: str | None, event_id: str | None,
                  stream: bool, catalog: str | None, config_path: str | None,
                  as_json: bool) -> None:
        """Record that USER did TYPE (view, click, add_to_cart, purchase, rating, dislike)
        to ITEM (a key such as book:26415, or an id)."""
        from redrec.catalog.registry import resolve_item
        from redrec.engine import Event
        from redrec.engine.setup import open_engine
        from redrec.engine.worker import publish
        from redrec.store.streams import EventStream

        with open_store() as store:
            _, item_id = resolve_item(store, item, catalog)
            ev = Event.create(user, item_id, event_type, timestamp=timestamp, value=value,
                              context=_json_arg(context, "--context"), id=event_id)
            if stream:
                entry = publish(EventStream(store.client), [ev])[0]
                emit({"queued": True, "entry": entry, "event": ev.to_dict()}, as_json,
                     f"queued event {ev.id} as stream entry {entry}")
                return
            engine = open_engine(store, catalog, config_path)
            applied = engine.track(ev)
        emit({"applied": applied, "event": ev.to_dict()}, as_json,
             f"{'applied' if applied else 'already applied'}: {user} {event_type} {item_id}")

    @main.command("recommend")
    @click.argument("user")
    @click.option("-k", "--k", "k", default=10, show_default=True, type=int)
    @click.option("--filter", "filter_exprs", multiple=True,
                  help="Pre-filter like field=value, field>=n (repeatable, ANDed).")
    @click.option("--where", help="A JSON filter object.")
    @click.option("--context", help='Context as JSON: {"time": ..., "location": {"lon": .., '
                  '"lat": ..}, "period": "sale", "device": "mobile"}.')
    @click.option("--exclude", multiple=True, help="Item ids to leave out (repeatable).")
    @click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False),
                  help="Engine config YAML (saved for this catalogue).")
    @click.option("--json", "as_json", is_flag=True)
    def recommend_cmd(user: str, k: int, filter_exprs: tuple[str, ...], where: str | None,
                      context: str | None, exclude: tuple[str, ...], catalog: str | None,
                      config_path: str | None, as_json: bool) -> None:
        """Recommendations for USER now (an unknown user gets the cold-start list)."""
        from redrec.cli_catalog import _filters
        from redrec.engine.setup import open_engine

        with open_store() as store:
            engine = open_engine(store, catalog, config_path)
            filters = _filters(engine.items.spec, filter_exprs, where)
            recs = engine.recommend(user, k, filters=filters,
                                    context=_json_arg(context, "--context"), exclude=exclude)
        if as_json:
            emit([{"item_id": r.item_id, "score": r.score, "reasons": list(r.reasons),
                   "fields": r.fields} for r in recs], True)
            return
        if not recs:
            click.echo("no recommendations", err=True)
        for n, r in enumerate(recs, 1):
            label = r.fields.get("title") or r.fields.get("name") or ""
            click.echo(f"{n:>3}. {r.item_id:<10} {r.score:.4f}  {label}  — {'; '.join(r.reasons)}")

    @main.command("user")
    @click.argument("user")
    @click.option("--age", type=float, help="Age in years.")
    @click.option("--gender")
    @click.option("--occupation")
    @click.option("--zip", "zip_code", help="Postal code.")
    @click.option("--loc", help="Location as lon,lat.")
    @click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")
    @click.option("--json", "as_json", is_flag=True)
    def user_cmd(user: str, age: float | None, gender: str | None, occupation: str | None,
                 zip_code: str | None, loc: str | None, catalog: str | None,
                 as_json: bool) -> None:
        """Show USER's state; with options, first record what is known about USER (used
        for "people like you": users of the same gender and occupation, age within 5)."""
        from redrec.engine.setup import open_engine

        attrs = {k: v for k, v in {"age": age, "gender": gender, "occupation": occupation,
                                   "zip": zip_code, "loc": loc}.items() if v is not None}
        with open_store() as store:
            engine = open_engine(store, catalog)
            if attrs:
                engine.set_user(user, **attrs)
            st = engine.state(user)
        # Affinities are stored as time-growing weights (no decay writes needed); shown
        # relative to the strongest one.
        top = max(st.affinity.values(), default=0.0) or 1.0
        affinity = {c: round(v / top, 3) for c, v in
                    sorted(st.affinity.items(), key=lambda kv: -kv[1])[:10]}
        out = {"user": user, "events": st.events, "recent": st.recent[:10],
               "excluded": sorted(st.excluded), "affinity": affinity,
               "attributes": st.attributes}
        emit(out, as_json, "\n".join(f"{k}: {v}" for k, v in out.items()))

    @main.command("worker")
    @click.option("--consumer", help="Consumer name (default: host-pid); reuse it after a "
                  "crash to resume its pending entries at once.")
    @click.option("--batch", default=200, show_default=True, type=int)
    @click.option("--max-events", type=int, help="Stop after this many entries.")
    @click.option("--idle-exit", type=float, help="Stop after this many idle seconds.")
    @click.option("--warm/--no-warm", default=True, show_default=True,
                  help="Load the catalogue's item vectors (up to 100,000) at start.")
    @click.option("--catalog", help="Catalogue (index) name; default: the last ingested.")
    @click.option("--json", "as_json", is_flag=True)
    def worker_cmd(consumer: str | None, batch: int, max_events: int | None,
                   idle_exit: float | None, warm: bool, catalog: str | None,
                   as_json: bool) -> None:
        """Apply events from the stream (consumer group; run several to share the load)."""
        from redrec.engine.setup import open_engine
        from redrec.engine.worker import Worker
        from redrec.store.streams import EventStream

        with open_store() as store:
            worker = Worker(open_engine(store, catalog), EventStream(store.client),
                            consumer=consumer, batch=batch)
            if warm:
                click.echo(f"loaded {worker.warm()} item vectors", err=True)
            click.echo(f"worker {worker.consumer} reading {worker.stream.name}", err=True)
            try:
                stats = worker.run(max_events=max_events, idle_exit_s=idle_exit)
            except KeyboardInterrupt:
                stats = worker.stats
        d = vars(stats)
        emit(d, as_json, f"applied {d['applied']}, duplicates {d['duplicates']}, "
             f"dead-lettered {d['dead']}")
