"""Readers for RecBole atomic files and plain ``user item`` logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from redrec.datasets.interactions import Interactions, read_pairs, read_recbole
from redrec.exceptions import InvalidInput, NotFoundError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ta\t4\t30\n"
    "u2\tb\t3\t10\n"
    "u1\tb\t5\t10\n"
    "u1\tc\t1\t30\n"
    "u2\tc\t2\t20\n"
)


def test_recbole_reads_sorted_sequences_with_ties_in_file_order(tmp_path: Path) -> None:
    data = read_recbole(write(tmp_path / "toy" / "toy.inter", INTER))
    assert len(data) == 5
    assert data.n_users == 2 and data.n_items == 3
    # u1: b at t=10, then a and c tie at t=30 and keep their file order.
    assert data.sequences() == {"u1": ["b", "a", "c"], "u2": ["b", "c"]}
    assert data.ratings is not None and data.ratings.dtype == np.float32
    assert data.ratings.tolist() == [4, 3, 5, 1, 2]
    assert data.item_attributes is None and data.user_attributes is None


def test_recbole_accepts_directory_stem_and_any_column_order(tmp_path: Path) -> None:
    text = "timestamp:float\titem_id:token\tuser_id:token\n5\tx\tu\n1\ty\tu\n"
    write(tmp_path / "d" / "d.inter", text)
    for where in (tmp_path / "d", tmp_path / "d" / "d.inter", tmp_path / "d" / "d"):
        data = read_recbole(where)
        assert data.sequences() == {"u": ["y", "x"]}
        assert data.ratings is None


def test_recbole_without_timestamp_uses_file_order(tmp_path: Path) -> None:
    data = read_recbole(write(tmp_path / "x.inter", "item_id\tuser_id\nb\tu\na\tu\n"))
    assert data.sequences() == {"u": ["b", "a"]}


def test_recbole_reads_item_and_user_tables(tmp_path: Path) -> None:
    inter = write(tmp_path / "m.inter", INTER)
    write(tmp_path / "m.item", "item_id:token\ttitle:token_seq\tyear:token\na\tThe A\t1999\nb\tB\t\n")
    write(tmp_path / "m.user", "age:token\tuser_id:token\n30\tu1\n")
    data = read_recbole(inter)
    assert data.item_attributes is not None and data.user_attributes is not None
    assert data.item_attributes.fields == {"title": "token_seq", "year": "token"}
    assert data.item_attributes.get("a") == {"title": "The A", "year": "1999"}
    assert data.item_attributes.get("b") == {"title": "B", "year": ""}
    assert data.user_attributes.get("u1") == {"age": "30"}


def test_encode_gives_codes_in_first_appearance_order(tmp_path: Path) -> None:
    data = read_recbole(write(tmp_path / "t.inter", INTER))
    users, items, user_ids, item_ids = data.encode()
    assert user_ids == ["u1", "u2"] and item_ids == ["a", "b", "c"]
    assert users.tolist() == [0, 1, 0, 0, 1] and items.tolist() == [0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty file"),
        ("user_id:token\trating:float\nu\t1\n", "missing required column 'item_id'"),
        ("user_id:token\titem_id:token\n", "no interactions"),
        ("user_id:token\titem_id:token\ttimestamp:float\nu\ti\tyesterday\n", ":2: timestamp"),
        ("user_id:token\titem_id:token\trating:float\nu\ti\t5\nu\ti\tfive\n", ":3: rating"),
        ("user_id:token\titem_id:token\trating:float\nu\ti\tnan\n", "not finite"),
        ("user_id:token\titem_id:token\nu\n", ":2: expected 2 tab-separated values"),
        ("user_id:token\titem_id:token\n\ti\n", ":2: empty user_id"),
        ("user_id\tuser_id\titem_id\nu\tu\ti\n", "duplicate column"),
    ],
)
def test_bad_recbole_files_raise_invalid_input_naming_file_and_line(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = write(tmp_path / "bad.inter", text)
    with pytest.raises(InvalidInput, match="bad.inter") as info:
        read_recbole(path)
    assert needle in str(info.value)


def test_bad_attribute_table_and_missing_files(tmp_path: Path) -> None:
    inter = write(tmp_path / "m.inter", INTER)
    write(tmp_path / "m.item", "title:token\nx\n")
    with pytest.raises(InvalidInput, match=r"m\.item:1: missing required column 'item_id'"):
        read_recbole(inter)
    with pytest.raises(NotFoundError):
        read_recbole(tmp_path / "nowhere.inter")
    with pytest.raises(NotFoundError, match="no .inter"):
        read_recbole(_mkdir(tmp_path / "e"))
    (tmp_path / "latin.inter").write_bytes(b"user_id\titem_id\n\xe9\tx\n")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_recbole(tmp_path / "latin.inter")


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_pairs_keep_line_order_as_time(tmp_path: Path) -> None:
    path = write(tmp_path / "log.txt", "u1 b\nu2  a\n\nu1\tc\nu1 a\n")
    data = read_pairs(path)
    assert isinstance(data, Interactions)
    assert data.sequences() == {"u1": ["b", "c", "a"], "u2": ["a"]}
    assert data.timestamps.tolist() == [0, 1, 2, 3]
    assert data.ratings is None and data.source == str(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("u1 a\nu2\n", ":2: expected 'user item'"),
        ("u1 a 5\n", ":1: expected 'user item', got 3"),
    ],
)
def test_bad_pairs_raise_invalid_input(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(InvalidInput, match="bad.txt") as info:
        read_pairs(path)
    assert needle in str(info.value)


def test_pairs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_pairs(tmp_path / "missing.txt")
