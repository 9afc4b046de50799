"""``redrec faces``: enrol faces, identify a face, evaluate on the ORL faces.

Data goes to stdout (``--json`` for machine output), messages and progress to stderr. A
redrec error prints ``error: <message>`` on one line and exits 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from redrec.exceptions import RedrecError

__all__ = ["faces"]


class _FacesGroup(click.Group):
    """Turns redrec errors into one line on stderr and exit 1 (as the main CLI does;
    kept here so this module imports without ``redrec.cli``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedrecError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@contextmanager
def _store(*, ephemeral: bool = False) -> Iterator[Any]:
    from redrec.config import Settings
    from redrec.runtime import connect

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError on a bad environment variable
        raise click.UsageError(f"bad environment setting: {exc}") from None
    with connect(settings, ephemeral=ephemeral) as store:
        yield store


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


def _progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


_MODEL = click.Choice(["hash", "json"])
_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_NAMESPACE = click.option("--namespace", default="face", show_default=True,
                          help="Key prefix of the gallery; its index is <namespace>_idx.")


@click.group(cls=_FacesGroup)
def faces() -> None:
    """Face recognition on Redis vector search (dlib ResNet, 128-d, cosine).

    Two storage models: `hash` (one HASH per face) and `json` (one JSON document per
    person holding all of their vectors).
    """


@faces.command("enroll")
@click.argument("directory", type=click.Path())
@click.option("--model", type=_MODEL, default=None,
              help="Storage model; default: the gallery's current one, or hash. Naming the "
                   "other model replaces the gallery.")
@click.option("--reset", is_flag=True, help="Delete the enrolled faces first.")
@_NAMESPACE
@_JSON
def enroll_cmd(directory: str, model: str | None, reset: bool, namespace: str,
               as_json: bool) -> None:
    """Enrol the faces in DIRECTORY: a folder of per-person folders (ORL layout:
    s1/1.bmp ...) or one person's folder (named after the person). People already
    enrolled get the new images."""
    from redrec.apps.faces import current_model, enroll

    with _store() as store:
        before = current_model(store, namespace)
        if before is not None and model is not None and model != before:
            click.echo(f"switching the gallery from {before} to {model}: "
                       "the enrolled faces are deleted", err=True)
        result = enroll(store, directory, model=model, namespace=namespace, reset=reset,
                        progress=_progress(as_json))
    _emit(result.to_dict(), as_json,
          f"enrolled {result.faces} faces of {len(result.people)} people "
          f"(model {result.model}) in {result.encode_seconds + result.write_seconds:.1f} s, "
          f"{result.faces_per_second:.1f} faces/s")


@faces.command("add")
@click.argument("person")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@_NAMESPACE
@_JSON
def add_cmd(person: str, images: tuple[str, ...], namespace: str, as_json: bool) -> None:
    """Add IMAGES of an enrolled PERSON (use `enroll` for a new person)."""
    from redrec.apps.faces import add_images

    with _store() as store:
        result = add_images(store, person, list(images), namespace=namespace)
    _emit(result.to_dict(), as_json, f"added {result.faces} faces to {person}")


@faces.command("remove")
@click.argument("person")
@_NAMESPACE
def remove_cmd(person: str, namespace: str) -> None:
    """Delete every face of PERSON."""
    from redrec.apps.faces import remove_person

    with _store() as store:
        n = remove_person(store, person, namespace=namespace)
    click.echo(f"removed {n} faces of {person}", err=True)


@faces.command("identify")
@click.argument("image", type=click.Path())
@click.option("-k", "--k", "k", default=3, show_default=True, type=int,
              help="How many people to list.")
@click.option("--threshold", type=float, default=None,
              help="Cosine distance under which a match counts [default: 0.052, chosen on "
                   "ORL].")
@_NAMESPACE
@_JSON
def identify_cmd(image: str, k: int, threshold: float | None, namespace: str,
                 as_json: bool) -> None:
    """Who is in IMAGE: the nearest K enrolled people with their distances, and the
    answer ("unknown" when nobody is within the threshold)."""
    from redrec.apps.faces import DEFAULT_THRESHOLD, identify

    with _store() as store:
        answer = identify(store, image, k=k, namespace=namespace,
                          threshold=DEFAULT_THRESHOLD if threshold is None else threshold)
    lines = [answer.person or f"unknown (no one within {answer.threshold})"]
    for rank, m in enumerate(answer.matches, 1):
        lines.append(f"{rank:>3}. {m.person:<16} {m.distance:.4f}"
                     + (f"  {m.path}" if m.path else ""))
    if answer.detected is False:
        click.echo("note: no face detected; the whole image was used", err=True)
    _emit(answer.to_dict(), as_json, "\n".join(lines))


@faces.command("evaluate")
@click.argument("directory", type=click.Path(), required=False)
@click.option("--model", type=_MODEL, default="hash", show_default=True)
@click.option("--enrolled", default=5, show_default=True, type=int,
              help="Images enrolled per person (the first ones); the rest are queried. "
                   "1 gives the harder 1/9 split.")
@click.option("--holdout", default=0, show_default=True, type=int,
              help="People left out of enrolment; their faces should come back unknown.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Picks the held-out people.")
@click.option("--threshold", type=float, default=None,
              help="Cosine distance under which a match counts [default: 0.052].")
@click.option("--in-store", is_flag=True,
              help="Run on the configured Redis (namespace face_eval) instead of a private "
                   "throwaway one.")
@_JSON
def evaluate_cmd(directory: str | None, model: str, enrolled: int, holdout: int, seed: int,
                 threshold: float | None, in_store: bool, as_json: bool) -> None:
    """Enrol a split of DIRECTORY (default: the bundled ORL faces) and identify the rest;
    print the recognition rate, the misses and timings. Runs in a private Redis by
    default, so the enrolled gallery is never touched."""
    from redrec.apps.faces import DEFAULT_THRESHOLD
    from redrec.apps.faces_eval import ORL_DIR, evaluate

    source = directory or str(ORL_DIR)
    with _store(ephemeral=not in_store) as store:
        result = evaluate(store, source, model=model, enrolled=enrolled, holdout=holdout,
                          seed=seed, namespace="face_eval" if in_store else "face",
                          threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                          progress=_progress(as_json))
    _emit(result.to_dict(), as_json, _evaluation_text(result))


def _evaluation_text(r: Any) -> str:
    t = r.timings
    lines = [
        f"model {r.model}: {r.people} people enrolled with {r.enrolled_per_person} images "
        f"each, {r.queries} queries",
        f"recognition rate {r.rate:.2%} ({r.correct}/{r.queries})",
    ]
    lines += [f"  miss: {m.path} is {m.expected}, got {m.got} ({_d(m.distance)})"
              for m in r.misses]
    lines.append(f"at threshold {r.threshold}: {r.rate_at_threshold:.2%} recognised, "
                 f"{len(r.false_rejects)} rejected as unknown")
    if r.unknown_queries:
        lines.append(f"held out {', '.join(r.holdout_people)}: {r.unknown_correct}/"
                     f"{r.unknown_queries} answered unknown ({r.unknown_rate:.2%})")
        lines += [f"  false accept: {m.path} taken for {m.got} ({_d(m.distance)})"
                  for m in r.false_accepts]
    lines.append(f"enrol {int(t['enrolled_faces'])} faces: {t['enroll_faces_per_s']:.1f} "
                 f"faces/s; identify p50 {t['identify_ms_p50']:.1f} ms, p99 "
                 f"{t['identify_ms_p99']:.1f} ms (search p50 {t['search_ms_p50']:.2f} ms)")
    return "\n".join(lines)


def _d(distance: float | None) -> str:
    return "-" if distance is None else f"{distance:.4f}"
