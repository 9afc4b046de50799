"""Interaction logs: RecBole atomic files and plain ``user item`` text, read into one shape.

Every trainer and evaluator in redrec starts from :class:`Interactions`, so the two input
formats only differ here. Per-user chronological sequences are the common currency the
models and the leave-one-out split consume; building them is the one place that decides
how ties in time are ordered (file order, which is what a plain text log means by time).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from redrec.exceptions import InvalidInput, NotFoundError

__all__ = ["AttributeTable", "Interactions", "read_pairs", "read_recbole"]

_USER = "user_id"
_ITEM = "item_id"
_RATING = "rating"
_TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class AttributeTable:
    """An optional RecBole ``.item`` or ``.user`` table: raw string values keyed by id.

    Values stay strings (``token_seq`` fields are space separated, as in the file) because
    the readers cannot know how a catalogue wants them embedded; ``fields`` keeps the
    RecBole type of each column (``token``, ``token_seq``, ``float``, ``float_seq``).
    """

    key: str
    fields: dict[str, str]
    rows: dict[str, dict[str, str]]

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: str) -> dict[str, str] | None:
        return self.rows.get(key)


@dataclass(frozen=True, eq=False)
class Interactions:
    """An interaction log: one row per event, ids as strings, time as float seconds.

    ``timestamps`` orders events within a user; for a plain text log it is the line index.
    ``ratings`` is ``None`` when the source has none (implicit feedback).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None = None
    item_attributes: AttributeTable | None = None
    user_attributes: AttributeTable | None = None
    source: str = ""
    _order: list[np.ndarray] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if (
            len(self.item_ids) != n
            or len(self.timestamps) != n
            or (self.ratings is not None and len(self.ratings) != n)
        ):
            raise InvalidInput("interaction columns have different lengths")

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def n_users(self) -> int:
        return len(self.unique_users())

    @property
    def n_items(self) -> int:
        return len(self.unique_items())

    def unique_users(self) -> list[str]:
        """User ids in order of first appearance (a stable index mapping)."""
        return _first_appearance(self.user_ids)

    def unique_items(self) -> list[str]:
        """Item ids in order of first appearance (a stable index mapping)."""
        return _first_appearance(self.item_ids)

    def chronological(self) -> np.ndarray:
        """Row indices sorted by (user, time); ties in time keep file order."""
        if not self._order:
            by_time = np.argsort(self.timestamps, kind="stable")
            users = self.user_ids[by_time]
            self._order.append(by_time[np.argsort(users, kind="stable")])
        return self._order[0]

    def sequences(self) -> dict[str, list[str]]:
        """Each user's items in time order, users in order of first appearance."""
        order = self.chronological()
        users = self.user_ids[order]
        items = self.item_ids[order]
        bounds = np.flatnonzero(users[1:] != users[:-1]) + 1
        starts = np.concatenate([[0], bounds]) if len(users) else np.zeros(0, dtype=int)
        ends = np.concatenate([bounds, [len(users)]]) if len(users) else starts
        by_user = {users[s]: items[s:e].tolist() for s, e in zip(starts, ends, strict=True)}
        return {u: by_user[u] for u in self.unique_users()}

    def encode(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """Integer codes ``(user_codes, item_codes, user_ids, item_ids)`` for sparse matrices."""
        user_ids, user_codes = _codes(self.user_ids)
        item_ids, item_codes = _codes(self.item_ids)
        return user_codes, item_codes, user_ids, item_ids


def _codes(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    ids = [str(v) for v in uniq[np.argsort(first, kind="stable")]]
    return ids, rank[inverse.ravel()]


def _first_appearance(values: np.ndarray) -> list[str]:
    if len(values) == 0:
        return []
    return _codes(values)[0]


# --- RecBole atomic files ------------------------------------------------------------


def _recbole_paths(path_or_dir: str | Path) -> tuple[Path, Path | None, Path | None]:
    path = Path(path_or_dir)
    if path.is_dir():
        inter = path / f"{path.name}.inter"
        if not inter.is_file():
            found = sorted(path.glob("*.inter"))
            if len(found) != 1:
                what = "no" if not found else "several"
                raise NotFoundError(f"{path}: {what} .inter file in this directory")
            inter = found[0]
    elif path.suffix == ".inter":
        inter = path
    else:
        inter = path.with_name(path.name + ".inter")
    if not inter.is_file():
        raise NotFoundError(f"{inter}: no such interaction file")
    item, user = inter.with_suffix(".item"), inter.with_suffix(".user")
    return inter, item if item.is_file() else None, user if user.is_file() else None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason})") from exc


def _header(path: Path, line: str) -> list[tuple[str, str]]:
    """``name:type`` columns; a header without types is read as all ``token``."""
    columns = []
    for raw in line.split("\t"):
        name, _, kind = raw.strip().partition(":")
        if not name:
            raise InvalidInput(f"{path}:1: empty column name in header")
        columns.append((name, kind or "token"))
    names = [name for name, _ in columns]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path}:1: duplicate column names in header {names}")
    return columns


def _read_table(path: Path) -> tuple[list[tuple[str, str]], Iterator[tuple[int, list[str]]]]:
    lines = _lines(path)
    first = next(lines, None)
    if first is None or not first[1].strip():
        raise InvalidInput(f"{path}: empty file (a header line is required)")
    columns = _header(path, first[1])

    def rows() -> Iterator[tuple[int, list[str]]]:
        for number, line in lines:
            if not line.strip():
                continue
            values = line.split("\t")
            if len(values) != len(columns):
                raise InvalidInput(
                    f"{path}:{number}: expected {len(columns)} tab-separated values, got {len(values)}"
                )
            yield number, values

    return columns, rows()


def _float(path: Path, number: int, name: str, value: str) -> float:
    try:
        parsed = float(value)
    except ValueError:
        raise InvalidInput(f"{path}:{number}: {name} {value!r} is not a number") from None
    if not math.isfinite(parsed):
        raise InvalidInput(f"{path}:{number}: {name} {value!r} is not finite")
    return parsed


def _token(path: Path, number: int, name: str, value: str) -> str:
    token = value.strip()
    if not token:
        raise InvalidInput(f"{path}:{number}: empty {name}")
    return token


def _read_attributes(path: Path, key: str) -> AttributeTable:
    columns, rows = _read_table(path)
    names = [name for name, _ in columns]
    if key not in names:
        raise InvalidInput(f"{path}:1: missing required column {key!r} (have {names})")
    at = names.index(key)
    table: dict[str, dict[str, str]] = {}
    for number, values in rows:
        ident = _token(path, number, key, values[at])
        table[ident] = {n: v.strip() for n, v in zip(names, values, strict=True) if n != key}
    return AttributeTable(key=key, fields={n: k for n, k in columns if n != key}, rows=table)


def read_recbole(path_or_dir: str | Path) -> Interactions:
    """Read RecBole atomic files: ``X.inter`` plus ``X.item`` / ``X.user`` when present.

    ``path_or_dir`` is the ``.inter`` file, its directory (``ml-100k/`` holding
    ``ml-100k.inter``), or the path without suffix. Columns may come in any order;
    ``user_id`` and ``item_id`` are required, ``rating`` and ``timestamp`` optional
    (without timestamps, file order is time). Extra columns are ignored.
    """
    inter, item_path, user_path = _recbole_paths(path_or_dir)
    columns, rows = _read_table(inter)
    names = [name for name, _ in columns]
    for required in (_USER, _ITEM):
        if required not in names:
            raise InvalidInput(f"{inter}:1: missing required column {required!r} (have {names})")
    u_at, i_at = names.index(_USER), names.index(_ITEM)
    r_at = names.index(_RATING) if _RATING in names else None
    t_at = names.index(_TIMESTAMP) if _TIMESTAMP in names else None
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    for number, values in rows:
        users.append(_token(inter, number, _USER, values[u_at]))
        items.append(_token(inter, number, _ITEM, values[i_at]))
        if r_at is not None:
            ratings.append(_float(inter, number, _RATING, values[r_at]))
        times.append(_float(inter, number, _TIMESTAMP, values[t_at]) if t_at is not None else len(times))
    if not users:
        raise InvalidInput(f"{inter}: no interactions after the header")
    return Interactions(
        user_ids=np.array(users, dtype=object),
        item_ids=np.array(items, dtype=object),
        timestamps=np.array(times, dtype=np.float64),
        ratings=np.array(ratings, dtype=np.float32) if r_at is not None else None,
        item_attributes=_read_attributes(item_path, _ITEM) if item_path else None,
        user_attributes=_read_attributes(user_path, _USER) if user_path else None,
        source=str(inter),
    )


# --- plain text pairs ----------------------------------------------------------------


def read_pairs(path: str | Path) -> Interactions:
    """Read a text log with one ``user item`` pair per line, in chronological order.

    Separators are any whitespace; blank lines are skipped. There is no time column, so
    the line index stands in for the timestamp and each user's lines keep their order.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such interaction file")
    users: list[str] = []
    items: list[str] = []
    for number, line in _lines(path):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise InvalidInput(f"{path}:{number}: expected 'user item', got {len(tokens)} token(s): {line!r}")
        users.append(tokens[0])
        items.append(tokens[1])
    if not users:
        raise InvalidInput(f"{path}: empty file (no 'user item' lines)")
    return Interactions(
        user_ids=np.array(users, dtype=object),
        item_ids=np.array(items, dtype=object),
        timestamps=np.arange(len(users), dtype=np.float64),
        source=str(path),
    )
