"""The in-process item table: rows, neighbour lists, and the decayed sums behind session
vectors (pure numpy, no Redis)."""

import numpy as np
import pytest

from redrec.engine.table import ItemTable, decayed_sums


def table(depth: int = 4) -> ItemTable:
    vecs = np.array([[1, 0], [0, 2], [3, 4], [0, 0]], dtype=np.float32)
    fields = [{"n": i} for i in range(4)]
    return ItemTable(7, ["a", "b", "c", "z"], vecs, fields, depth)


def test_rows_and_norms():
    t = table()
    assert len(t) == 4 and t.generation == 7
    assert t.rows(["c", "a"]) == [2, 0]
    assert t.rows(["a", "nope"]) is None
    assert t.norms.tolist() == [1.0, 2.0, 5.0, 1.0]  # a zero vector counts as length 1
    assert t.fields[t.row["b"]] == {"n": 1}


def test_neighbour_lists_skip_exclusions_and_unknown_ids():
    t = table(depth=3)
    assert not t.holds("a") and t.neighbours_of("a", set(), 5) is None
    t.set_neighbours("a", ["b", "gone", "c", "z", "b"])  # "gone" is not held: left out
    assert t.holds("a") and t.held_neighbours() == 1
    assert t.neighbours_of("a", set(), 5) == ["b", "c", "z"]  # cut to depth 3
    assert t.neighbours_of("a", {"c"}, 5) == ["b", "z"]
    assert t.neighbours_of("a", set(), 1) == ["b"]
    t.set_neighbours("a", ["c"])  # replaced, not appended
    assert t.neighbours_of("a", set(), 5) == ["c"]
    t.set_neighbours("unknown", ["a"])  # an item the table does not hold: ignored
    assert t.held_neighbours() == 1


def test_mismatched_columns_are_refused():
    with pytest.raises(ValueError, match="one entry per item"):
        ItemTable(0, ["a"], np.zeros((2, 2), dtype=np.float32), [{}], 3)


def test_decayed_sums_normalise_rows_then_weight_them():
    m = np.array([[2, 0], [0, 3], [1, 1]], dtype=np.float32)
    norms = np.sqrt((m * m).sum(axis=1))
    out = decayed_sums(m, norms, [1.0, 3.0, 0.5], [(0, 2), (2, 2), (2, 3)])
    expected = np.array([1.0, 3.0]) / np.sqrt(10.0)  # unit rows weighted 1 and 3
    assert np.allclose(out[0], expected, atol=1e-6)
    assert out[1] is None  # an empty span
    assert np.allclose(out[2], [2 ** -0.5, 2 ** -0.5], atol=1e-6)
    assert all(o is None or o.dtype == np.float32 for o in out)
    # weights that cancel out leave no direction
    cancel = decayed_sums(m[:1].repeat(2, axis=0), norms[:1].repeat(2), [1.0, -1.0], [(0, 2)])
    assert cancel == [None]
