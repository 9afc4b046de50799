"""The main job (`make demo` / `redrec demo`): embedded Redis, the books sample,
content recommendations, semantic and range search, then a clean stop."""

from __future__ import annotations

import time

import click

from redrec.config import Settings

__all__ = ["run_demo"]


def _show(title: str, matches: list, fields: tuple[str, ...] = ("title", "author"),
          reasons: bool = False) -> None:
    click.echo(f"\n{title}")
    for rank, m in enumerate(matches, 1):
        label = " — ".join(str(m.fields.get(f, "")) for f in fields if m.fields.get(f))
        why = f"  [{'; '.join(m.reasons)}]" if reasons else ""
        click.echo(f"  {rank}. {label}  (score {m.score:.3f}){why}")


def run_demo(settings: Settings) -> None:
    from redrec.apps.books import books_catalog, ingest_books
    from redrec.runtime import connect

    t0 = time.perf_counter()
    with connect(settings) as store:
        info = store.server_info()
        click.echo(f"Redis {info['redis_version']} with search and JSON is up "
                   f"({time.perf_counter() - t0:.2f}s); data in {settings.data_dir}")
        report = ingest_books(store, progress=True)
        click.echo(f"Books: {report.written} in index books_idx; embeddings computed "
                   f"{report.computed.get('text', 0)}, from cache {report.cached.get('text', 0)} "
                   f"({report.total_s:.1f}s)")
        books = books_catalog(store)
        seed = books.get("26415")
        _show(f"Because you liked “{seed['title']}” by {seed['author']}:",
              books.similar("26415", 5))
        _show("…published since 2000 only:",
              books.similar("26415", 5, filters={"year_published": {"gte": 2000}}))
        query = "a boy discovers he is a wizard and goes to a school of magic"
        books.search("warm-up", 1)  # loads the query encoder once
        t = time.perf_counter()
        hits = books.search(query, 5)
        _show(f"Semantic search “{query}” ({(time.perf_counter() - t) * 1000:.1f} ms):", hits)
        near = books.within(0.6, item_id="26415", limit=5)
        _show("Range query: books within cosine distance 0.6 of “It”:", near)

        from redrec.engine import Engine, EngineConfig

        engine = Engine(store, books, EngineConfig(category_field="genres"))
        reader = "demo-reader"
        engine.users.forget(reader)  # start the session afresh on every run
        for item, kind in (("26415", "view"), ("3008", "click"), ("2706", "purchase")):
            engine.track(user_id=reader, item_id=item, type=kind)
        t = time.perf_counter()
        recs = engine.recommend(reader, 5)
        _show(f"Online: a reader viewed “It”, clicked “Wayward”, bought “Before the Devil "
              f"Breaks You”; recommended now ({(time.perf_counter() - t) * 1000:.1f} ms):",
              recs, reasons=True)
        engine.track(user_id=reader, item_id="9", type="click")
        engine.track(user_id=reader, item_id="15", type="view")
        _show("…after two clicks on Transformers books, the very next list:",
              engine.recommend(reader, 5), reasons=True)
    click.echo(f"\nEmbedded Redis stopped cleanly; total {time.perf_counter() - t0:.1f}s.")
