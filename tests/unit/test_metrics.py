"""Leave-one-out split, ranking metrics and the two evaluation protocols."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from redrec.evaluate.metrics import (
    evaluate,
    hit_rate,
    mrr,
    ndcg,
    rank_of_target,
    recall,
    sample_negatives,
)
from redrec.evaluate.split import EvalCase, leave_one_out
from redrec.exceptions import InvalidInput


def test_leave_one_out_by_time() -> None:
    split = leave_one_out({"a": ["1", "2", "3", "4"], "b": ["1", "2"], "c": ["5", "6", "7"]})
    assert split.train == {"a": ["1", "2"], "b": ["1", "2"], "c": ["5"]}
    assert [(c.user, list(c.history), c.target) for c in split.valid] == [
        ("a", ["1", "2"], "3"),
        ("c", ["5"], "6"),
    ]
    # The test history holds the validation item: serving would know it.
    assert [(c.user, list(c.history), c.target) for c in split.test] == [
        ("a", ["1", "2", "3"], "4"),
        ("c", ["5", "6"], "7"),
    ]
    assert split.catalogue() == ["1", "2", "5"]
    assert split.n_train_events() == 5
    with pytest.raises(InvalidInput):
        leave_one_out({}, min_length=2)


def test_rank_of_target_counts_ties_against_the_target() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [1.0, 1.0, 1.0], [0.3, 0.2, -np.inf]])
    assert rank_of_target(scores, np.array([2, 0, 2])).tolist() == [1, 2, 3]
    assert rank_of_target(scores, np.array([1, -1, 0])).tolist() == [0, 3, 0]


def test_metric_values_from_ranks() -> None:
    ranks = np.array([0, 1, 9, 10, 99])
    assert hit_rate(ranks, 10) == pytest.approx(3 / 5)
    expected = (1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5
    assert ndcg(ranks, 10) == pytest.approx(expected)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 100) / 5)
    assert hit_rate(np.array([]), 10) == 0.0 and ndcg(np.array([]), 10) == 0.0


def test_recall_from_ranked_lists() -> None:
    ranked = [["a", "b", "c"], ["x", "y", "z"]]
    assert recall(ranked, [{"a", "z"}, {"y"}], k=2) == pytest.approx((0.5 + 1.0) / 2)
    assert recall(ranked, [{"c"}, set()], k=3) == 1.0  # cases without relevant items skip


def test_sample_negatives_never_the_users_items_and_seeded() -> None:
    catalogue = [str(i) for i in range(500)]
    sequences = {"u": [str(i) for i in range(0, 300, 3)], "v": ["1", "2"]}
    cases = [EvalCase("u", sequences["u"][:-1], sequences["u"][-1]), EvalCase("v", ["1"], "2")]
    neg = sample_negatives(cases, sequences, catalogue, n=100, seed=7)
    assert neg.shape == (2, 100)
    for row, user in zip(neg, ("u", "v"), strict=True):
        assert len(set(row.tolist())) == 100
        assert not {catalogue[j] for j in row} & set(sequences[user])
    assert np.array_equal(neg, sample_negatives(cases, sequences, catalogue, n=100, seed=7))
    # A user who has seen nearly everything gets what is left, padded with -1.
    small = sample_negatives([EvalCase("v", ["1"], "2")], sequences, catalogue[:5], n=10)
    assert sorted(small[0][:3].tolist()) == [0, 3, 4] and (small[0][3:] == -1).all()


class Fixed:
    """A scorer whose scores do not depend on the history."""

    def __init__(self, item_ids: list[str], scores: list[float]):
        self.item_ids = item_ids
        self._scores = np.array(scores, dtype=np.float32)

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        return np.tile(self._scores, (len(histories), 1))


def test_full_protocol_excludes_seen_items_like_serving() -> None:
    model = Fixed(["a", "b", "c", "d"], [4, 3, 2, 1])
    cases = [EvalCase("u", ["a", "b"], "c"), EvalCase("v", [], "d"), EvalCase("w", ["c"], "c")]
    catalogue = ["a", "b", "c", "d"]
    result = evaluate(model, cases, catalogue=catalogue, k=1)
    # u: a, b excluded -> c first; v: d last (rank 3); w: target already seen -> miss.
    assert result["HR@1"] == pytest.approx(1 / 3)
    assert result["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 5) / 3)
    assert result["Recall@1"] == result["HR@1"]
    kept = evaluate(model, cases, catalogue=catalogue, k=1, exclude_seen=False)
    assert kept["MRR"] == pytest.approx((1 / 3 + 1 / 4 + 1 / 3) / 3)


def test_unknown_items_cannot_be_recommended_and_unknown_targets_miss() -> None:
    model = Fixed(["a", "b"], [1, 2])
    catalogue = ["a", "b", "new"]
    cases = [EvalCase("u", [], "a"), EvalCase("v", [], "new")]
    ranks = evaluate(model, cases, catalogue=catalogue, k=1)
    assert ranks["HR@1"] == 0.0 and ranks["MRR"] == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_sampled_protocol_ranks_target_among_negatives() -> None:
    catalogue = [str(i) for i in range(10)]
    model = Fixed(catalogue, [float(i) for i in range(10)])
    cases = [EvalCase("u", ["0"], "5"), EvalCase("v", ["0"], "9")]
    negatives = np.array([[1, 2, 6], [1, 2, -1]])
    result = evaluate(model, cases, catalogue=catalogue, k=1, protocol="sampled", negatives=negatives)
    assert result["HR@1"] == 0.5  # 5 loses to 6; 9 beats 1, 2
    assert result["MRR"] == pytest.approx((1 / 2 + 1) / 2)
    assert "Recall@1" not in result
    with pytest.raises(InvalidInput):
        evaluate(model, cases, catalogue=catalogue, protocol="sampled")
    with pytest.raises(InvalidInput):
        evaluate(model, cases, catalogue=catalogue, protocol="nope")
