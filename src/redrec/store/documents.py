"""Turning user documents into what Redis stores, with every check done before writing.

HASH: scalars as strings, tags joined by the field's separator, vectors as little-endian
blobs. JSON: the document as given, with vectors as lists of floats (a list of lists for
a multi-vector field). Unknown extra fields are kept; indexed fields are type-checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from redrec.exceptions import InvalidInput
from redrec.store.schema import FieldInfo, IndexSpec
from redrec.store.vectors import as_vector, as_vectors, to_bytes

__all__ = ["check_id", "to_hash", "to_json"]

MAX_ID_LENGTH = 512
# Any character str.isspace() calls a space (the regex engine uses the same test), the
# unit separator \x1f that joins ids in stored lists included; one C-level scan per id.
HAS_SPACE = re.compile(r"\s")


def check_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"a document id must be a string or an integer, got {value!r}")
    s = str(value)
    if not s or len(s) > MAX_ID_LENGTH or HAS_SPACE.search(s):
        raise InvalidInput(f"bad document id {s[:80]!r}: non-empty, no spaces, <= 512 chars")
    return s


def _simple_path(path: str | None, name: str) -> list[str] | None:
    """``$.a.b`` -> ["a", "b"]; None for paths we do not walk (filters, wildcards)."""
    if not path:
        return [name]
    p = path.strip()
    if p.endswith("[*]"):
        p = p[:-3]
    if not p.startswith("$."):
        return None
    parts = p[2:].split(".")
    if any(not part or "[" in part or "*" in part for part in parts):
        return None
    return parts


def _get(doc: Mapping[str, Any], parts: list[str]) -> Any:
    cur: Any = doc
    for part in parts:
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _set(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    cur = doc
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        else:
            nxt = dict(nxt)
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _check_scalar(field: FieldInfo, value: Any, doc_id: str) -> None:
    where = f"document {doc_id!r} field {field.name!r}"
    if field.type == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidInput(f"{where}: {value!r} is not a number") from None
        if not math.isfinite(float(value)):
            raise InvalidInput(f"{where}: {value!r} is not finite")
    elif field.type == "geo":
        _geo_string(value, where)
    elif field.type == "tag":
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, dict | list) or v is None:
                raise InvalidInput(f"{where}: tag values must be strings, got {v!r}")
    elif field.type == "text" and not isinstance(value, str | int | float):
        raise InvalidInput(f"{where}: text must be a string, got {type(value).__name__}")


def _geo_string(value: Any, where: str) -> str:
    if isinstance(value, Mapping):
        lon, lat = value.get("lon"), value.get("lat")
    elif isinstance(value, list | tuple) and len(value) == 2:
        lon, lat = value
    elif isinstance(value, str) and value.count(",") == 1:
        lon, lat = value.split(",")
    else:
        raise InvalidInput(f"{where}: a location is 'lon,lat', [lon, lat] or {{lon, lat}}")
    try:
        flon, flat = float(lon), float(lat)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: {value!r} is not a location") from None
    if not (-180 <= flon <= 180 and -85.05112878 <= flat <= 85.05112878):
        raise InvalidInput(f"{where}: location {value!r} out of range")
    return f"{flon},{flat}"


def to_hash(spec: IndexSpec, doc: Mapping[str, Any], doc_id: str) -> dict[str, bytes | str]:
    """The HSET mapping for ``doc``: checked, vectors as blobs, no None values."""
    out: dict[str, bytes | str] = {}
    for name, value in doc.items():
        if value is None:
            continue
        vf = spec.vectors.get(name)
        if vf is not None:
            out[name] = to_bytes(
                as_vector(value, vf.dims, vf.datatype, what=f"document {doc_id!r} {name!r}")
            )
            continue
        field = spec.fields.get(name)
        if field is not None:
            _check_scalar(field, value, doc_id)
            if field.type == "tag" and isinstance(value, list | tuple):
                out[name] = field.separator.join(str(v) for v in value)
                continue
            if field.type == "geo":
                out[name] = _geo_string(value, name)
                continue
        if isinstance(value, bytes):
            out[name] = value
        elif isinstance(value, dict | list | tuple):
            out[name] = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, np.ndarray):
            out[name] = json.dumps(value.tolist())
        else:
            out[name] = str(value)
    return out


def to_json(spec: IndexSpec, doc: Mapping[str, Any], doc_id: str) -> str:
    """The JSON.SET document for ``doc``: checked, vectors as lists of floats."""
    out: dict[str, Any] = dict(doc)
    for vf in spec.vectors.values():
        parts = _simple_path(vf.path, vf.name)
        if parts is None:
            continue
        value = _get(out, parts)
        if value is None:
            continue
        what = f"document {doc_id!r} {vf.name!r}"
        if vf.multi:
            vectors = as_vectors(value, vf.dims, vf.datatype, what=what)
            _set(out, parts, [v.tolist() for v in vectors])
        else:
            _set(out, parts, as_vector(value, vf.dims, vf.datatype, what=what).tolist())
    for field in spec.fields.values():
        if field.type == "vector":
            continue
        parts = _simple_path(field.path, field.name)
        if parts is None:
            continue
        value = _get(out, parts)
        if value is None:
            continue
        _check_scalar(field, value, doc_id)
        if field.type == "geo":
            _set(out, parts, _geo_string(value, field.name))
    try:
        return json.dumps(out, ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"document {doc_id!r} cannot be stored as JSON: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
