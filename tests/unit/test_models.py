"""One contract suite over every model, plus known answers and the tower's serving path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from redrec.exceptions import InvalidInput, NotFoundError
from redrec.models.als import ALS
from redrec.models.base import Recommender, VectorRecommender, load_model
from redrec.models.itemknn import ItemKNN
from redrec.models.popularity import Popularity
from redrec.models.tower import TowerConfig, UserTower

NOISE = [f"n{i}" for i in range(20)]


def abc_sequences(users: int = 120, seed: int = 0) -> dict[str, list[str]]:
    """Every user's log holds A, B, C in that order, between a little random noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for u in range(users):
        before = rng.choice(NOISE, size=rng.integers(0, 3), replace=False).tolist()
        after = [n for n in rng.choice(NOISE, size=3, replace=False) if n not in before]
        out[f"u{u}"] = [*before, "A", "B", "C", *after[: rng.integers(0, 3)]]
    return out


def cycle_sequences(users: int = 150, items: int = 10, seed: int = 0) -> dict[str, list[str]]:
    """Runs along a cycle 0 -> 1 -> ... -> 9 -> 0: only order tells what comes next."""
    rng = np.random.default_rng(seed)
    out = {}
    for u in range(users):
        start, length = rng.integers(0, items), rng.integers(3, 8)
        out[f"u{u}"] = [f"i{(start + j) % items}" for j in range(length)]
    return out


SMALL_TOWER = TowerConfig(
    dim=16, layers=1, heads=1, max_len=8, dropout=0.0, epochs=40, batch_size=32, lr=0.01, seed=3
)

FACTORIES = {
    "popularity": Popularity,
    "itemknn": lambda: ItemKNN(neighbours=10),
    "als": lambda: ALS(factors=8, iterations=5, regularization=0.1, num_threads=1),
    "tower": lambda: UserTower(SMALL_TOWER),
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread, and do not stall on a busy machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fitted(one_torch_thread: None) -> dict[str, Recommender]:
    data = abc_sequences()
    return {name: make().fit(data) for name, make in FACTORIES.items()}


@pytest.mark.parametrize("name", FACTORIES)
def test_known_answer_after_a_b_comes_c(fitted: dict[str, Recommender], name: str) -> None:
    model = fitted[name]
    top = model.recommend(["A", "B"], k=3)
    assert top[0].item_id == "C"
    assert all(item.item_id not in ("A", "B") for item in top)  # seen items excluded
    assert top[0].score >= top[1].score >= top[2].score


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_shapes_unknown_items_and_exclusions(fitted: dict[str, Recommender], name: str) -> None:
    model = fitted[name]
    n = len(model.item_ids)
    assert set(model.item_ids) == {i for items in abc_sequences().values() for i in items}
    scores = model.score([["A"], [], ["never-seen", "A"]])
    assert scores.shape == (3, n) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # An item the model never saw is ignored, whatever its position.
    assert np.allclose(scores[0], scores[2], atol=1e-5)
    assert model.recommend(["never-seen"], k=2)  # no error, still answers
    top = model.recommend(["A"], k=n, exclude=["C"])
    assert {"A", "C"}.isdisjoint(i.item_id for i in top) and len(top) == n - 2
    assert len(model.recommend(["A"], k=n + 10, exclude_seen=False)) == n
    with pytest.raises(InvalidInput):
        model.recommend(["A"], k=0)


@pytest.mark.parametrize("name", FACTORIES)
def test_save_load_round_trip_gives_identical_scores(
    fitted: dict[str, Recommender], name: str, tmp_path: Path
) -> None:
    model = fitted[name]
    path = model.save(tmp_path / name)
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "redrec.model" and config["model"] == name
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.item_ids == model.item_ids
    assert loaded.metadata["version"] == config["version"]
    histories = [["A", "B"], [], ["n3", "A"]]
    assert np.array_equal(loaded.score(histories), model.score(histories))
    if isinstance(model, VectorRecommender):
        assert isinstance(loaded, VectorRecommender)
        assert np.array_equal(loaded.item_vectors(), model.item_vectors())
        assert loaded.item_vectors().dtype == np.float32
        assert np.array_equal(loaded.user_vector(["A", "B"]), model.user_vector(["A", "B"]))
    # Same content, same version: the hash does not depend on when it was saved.
    assert (
        json.loads((model.save(tmp_path / "again").joinpath("config.json")).read_text())["version"]
        == config["version"]
    )


def test_load_errors(tmp_path: Path, fitted: dict[str, Recommender]) -> None:
    with pytest.raises(NotFoundError):
        load_model(tmp_path)
    path = fitted["popularity"].save(tmp_path / "pop")
    with pytest.raises(InvalidInput, match="not ALS"):
        ALS.load(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"params": {"bogus": 1}}))
    with pytest.raises(InvalidInput, match="does not match"):
        load_model(path)
    (path / "config.json").write_text(json.dumps(config | {"format_version": 99}))
    with pytest.raises(InvalidInput, match="newer"):
        load_model(path)
    with pytest.raises(InvalidInput):
        Popularity().recommend(["A"])
    with pytest.raises(InvalidInput):
        Popularity().fit({})


def test_tower_learns_order_that_counts_cannot_see() -> None:
    data = cycle_sequences()
    tower = UserTower(SMALL_TOWER).fit(data)
    for start in range(10):
        history = [f"i{start}", f"i{(start + 1) % 10}"]
        assert tower.recommend(history, k=1)[0].item_id == f"i{(start + 2) % 10}"


def test_tower_sampled_softmax_learns_the_order_too() -> None:
    data = cycle_sequences()
    tower = UserTower(SMALL_TOWER, loss="sampled", negatives=6).fit(data)
    assert tower.metadata["loss"] == "sampled"
    hits = sum(
        tower.recommend([f"i{s}", f"i{(s + 1) % 10}"], k=1)[0].item_id == f"i{(s + 2) % 10}"
        for s in range(10)
    )
    assert hits >= 9


def test_tower_is_seeded_and_its_numpy_forward_matches_torch(
    fitted: dict[str, Recommender],
) -> None:
    torch = pytest.importorskip("torch")
    from redrec.models import tower as tower_module

    model = fitted["tower"]
    assert isinstance(model, UserTower)
    again = UserTower(SMALL_TOWER).fit(abc_sequences())
    assert np.array_equal(again.item_vectors(), model.item_vectors())
    net = tower_module._network(torch)(len(model.item_ids), model.config)
    state = {
        ("items.weight" if k == "items" else "positions.weight" if k == "positions" else k): torch.from_numpy(
            v
        )
        for k, v in model._arrays().items()
        if k != "empty"
    }
    net.load_state_dict(state)
    net.eval()
    histories = [["A"], ["n1", "A", "B"], ["n2", "n3", "A", "B", "C", "n4", "n5", "n6", "n7"]]
    tokens = torch.zeros(len(histories), model.config.max_len, dtype=torch.long)
    for row, history in enumerate(histories):
        ids = [model.item_ids.index(i) + 1 for i in history][-model.config.max_len :]
        tokens[row, model.config.max_len - len(ids) :] = torch.tensor(ids)
    with torch.no_grad():
        expected = net(tokens)[:, -1].numpy()
    assert np.allclose(model.user_vectors(histories), expected, atol=1e-5)
    single = np.stack([model.user_vector(h) for h in histories])
    assert np.allclose(single, expected, atol=1e-5)


def test_tower_cold_start_vector_prefers_popular_items(fitted: dict[str, Recommender]) -> None:
    model = fitted["tower"]
    top = [i.item_id for i in model.recommend([], k=3)]
    assert set(top) == {"A", "B", "C"}


def test_als_user_vector_is_implicits_recalculate_user() -> None:
    pytest.importorskip("implicit")
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    data = abc_sequences()
    model = ALS(factors=8, iterations=3, regularization=0.5, alpha=4.0, num_threads=1).fit(data)
    reference = AlternatingLeastSquares(factors=8, regularization=0.5, alpha=4.0)
    reference.item_factors = model.item_vectors()
    history = ["A", "n2", "B"]
    rows = [model.item_ids.index(i) for i in history]
    user_items = sp.csr_matrix(
        (np.ones(3, dtype=np.float32), ([0, 0, 0], rows)), shape=(1, len(model.item_ids))
    )
    expected = reference.recalculate_user(0, user_items)
    assert np.allclose(model.user_vector(history), expected, atol=1e-4)


def test_serving_a_saved_model_does_not_import_torch(fitted: dict[str, Recommender], tmp_path: Path) -> None:
    for name in ("als", "tower"):
        fitted[name].save(tmp_path / name)
    code = (
        "import sys\n"
        "from redrec.models.base import load_model\n"
        f"for name in ('als', 'tower'):\n"
        f"    model = load_model({str(tmp_path)!r} + '/' + name)\n"
        "    assert model.user_vector(['A', 'B']).shape == (model.item_vectors().shape[1],)\n"
        "assert 'torch' not in sys.modules and 'implicit' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_hyperparameters_raise_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        TowerConfig(dim=10, heads=3)
    with pytest.raises(InvalidInput):
        TowerConfig(loss="bpr")
    with pytest.raises(InvalidInput):
        ALS(factors=0)
    with pytest.raises(InvalidInput):
        ItemKNN(neighbours=0)
    with pytest.raises(InvalidInput):
        UserTower(SMALL_TOWER).fit({"u": ["only-one"]})
