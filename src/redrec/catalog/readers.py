"""Reading catalogue records from a JSON directory, a JSON file, JSONL or CSV.

Every record comes with where it came from (``file`` or ``file:line``) so that an error
can name the exact place.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redrec.exceptions import InvalidInput, NotFoundError

__all__ = ["Record", "read_records"]


@dataclass(frozen=True)
class Record:
    where: str
    data: dict[str, Any]


def read_records(path: str | Path) -> list[Record]:
    """All records under ``path`` (a directory of ``*.json``, ``.json``, ``.jsonl``, ``.csv``)."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"no catalogue at {p}")
    if p.is_dir():
        files = sorted(p.glob("*.json"), key=lambda f: f.name)
        if not files:
            raise InvalidInput(f"{p} holds no *.json files")
        return [r for f in files for r in _read_json(f)]
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return list(_read_jsonl(p))
    if suffix == ".json":
        return _read_json(p)
    if suffix in (".csv", ".tsv"):
        return list(_read_csv(p, "\t" if suffix == ".tsv" else ","))
    raise InvalidInput(f"{p}: unknown catalogue format (use a directory of .json, .json, .jsonl or .csv)")


def _read_json(path: Path) -> list[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc})") from None
    rows = data if isinstance(data, list) else [data]
    out = []
    for i, row in enumerate(rows):
        where = str(path) if not isinstance(data, list) else f"{path}[{i}]"
        if not isinstance(row, dict):
            raise InvalidInput(f"{where}: a record must be a JSON object")
        out.append(Record(where, row))
    return out


def _read_jsonl(path: Path) -> Iterator[Record]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{path}:{n}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{path}:{n}: a record must be a JSON object")
            yield Record(f"{path}:{n}", row)


def _read_csv(path: Path, delimiter: str) -> Iterator[Record]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if not reader.fieldnames:
            raise InvalidInput(f"{path}: empty file or no header row")
        for n, row in enumerate(reader, 2):
            if None in row:
                raise InvalidInput(f"{path}:{n}: more cells than header columns")
            yield Record(f"{path}:{n}", {k: v for k, v in row.items() if v not in (None, "")})
