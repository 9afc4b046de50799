"""Face recognition on the ORL faces, through both storage models, on a real Redis.

The 400 faces are encoded once per module (about 40 s of dlib on one core) and reused by
every test that needs them; those tests are marked slow. The rest encode a handful.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from redrec.apps import faces as F
from redrec.apps.faces_eval import (
    ORL_DIR,
    FaceSet,
    calibrate_threshold,
    distance_profile,
    encode_faceset,
    evaluate,
)
from redrec.embed.face import FaceEncoder, load_rgb
from redrec.exceptions import InvalidInput, NotFoundError
from redrec.runtime import connect
from redrec.store import Store

MODELS = ["hash", "json"]


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with connect(ephemeral=True) as s:
        yield s


@pytest.fixture(scope="module")
def faceset() -> FaceSet:
    return encode_faceset(ORL_DIR, F.default_encoder())


def _orl(person: str, n: int) -> Path:
    return ORL_DIR / person / f"{n}.bmp"


def _enrol_split(store: Store, faceset: FaceSet, model: str, *, skip: set[str] = frozenset(),
                 enrolled: int = 5, namespace: str = "face") -> None:
    F.enroll_vectors(
        store,
        [(p, str(path), faceset.vectors[path]) for p, files in faceset.people.items()
         if p not in skip for path in files[:enrolled]],
        model=model, namespace=namespace, reset=True,
    )


# -- the encoder ------------------------------------------------------------------------


def test_packaged_orl_data_is_complete():
    people = F.scan(ORL_DIR)
    assert list(people) == [f"s{i}" for i in range(1, 41)]
    assert all([p.stem for p in files] == [str(n) for n in range(1, 11)]
               for files in people.values())
    assert (ORL_DIR / "LICENSE").read_text().startswith("MIT License")
    assert sum(f.stat().st_size for f in ORL_DIR.rglob("*")) < 6_000_000


def test_encoder_gives_128_float32_and_grey_is_fed_as_rgb():
    enc = F.default_encoder()
    assert (enc.name, enc.dim) == ("dlib-resnet-v1", 128)
    rgb = load_rgb(_orl("s1", 1))
    assert rgb.shape == (112, 92, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all()
    out = enc.encode([_orl("s1", 1), _orl("s1", 1).read_bytes(), rgb[..., 0]])
    assert out.shape == (3, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    assert enc.encode([]).shape == (0, 128)


def test_no_face_found_falls_back_to_the_whole_image():
    noise = np.random.default_rng(0).integers(0, 255, size=(112, 92), dtype=np.uint8)
    face = F.default_encoder().encode_one(noise)
    assert not face.detected and face.box == (0, 0, 91, 111)
    assert face.vector.shape == (128,) and np.isfinite(face.vector).all()


@pytest.mark.slow
def test_threshold_is_what_calibration_on_orl_gives(faceset):
    genuine, impostor = distance_profile(faceset, enrolled=5)
    assert genuine.max() < impostor.min()  # on ORL 5/5 the two separate
    assert calibrate_threshold(genuine, impostor) == pytest.approx(F.DEFAULT_THRESHOLD, abs=0.002)


def test_calibration_picks_the_fewest_errors_when_distances_overlap():
    assert calibrate_threshold(np.array([0.1, 0.2]), np.array([0.4, 0.5])) == pytest.approx(0.3)
    # One impostor at 0.15 among genuines: the best cut keeps every genuine.
    t = calibrate_threshold(np.array([0.1, 0.2, 0.25]), np.array([0.15, 0.4, 0.5]))
    assert 0.25 < t <= 0.4
    with pytest.raises(InvalidInput):
        calibrate_threshold(np.array([]), np.array([0.1]))


# -- recognition on ORL -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_recognition_rate_5_5(store, faceset, model, record_property):
    result = evaluate(store, faceset, model=model, enrolled=5)
    record_property(f"rate_{model}", result.rate)
    assert result.queries == 200 and result.people == 40
    assert result.rate >= 0.995, result.misses
    assert len(result.misses) == result.queries - result.correct
    # The threshold rejects almost no one who is enrolled.
    assert result.rate_at_threshold >= 0.99
    assert result.timings["search_ms_p50"] is not None
    assert F.current_model(store) == model


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_recognition_rate_1_9(store, faceset, model, record_property):
    result = evaluate(store, faceset, model=model, enrolled=1)
    record_property(f"rate_1_9_{model}", result.rate)
    assert result.queries == 360
    assert result.rate >= 0.98, result.misses


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_people_held_out_are_unknown_and_enrolled_ones_still_recognised(
    store, faceset, model, record_property, capsys
):
    result = evaluate(store, faceset, model=model, enrolled=5, holdout=5, seed=0)
    record_property(f"unknown_rate_{model}", result.unknown_rate)
    with capsys.disabled():
        print(f"\n[{model}] held out {result.holdout_people}: unknown rate "
              f"{result.unknown_rate:.2%} ({result.unknown_correct}/{result.unknown_queries}); "
              f"enrolled rate {result.rate:.2%}, at threshold {result.rate_at_threshold:.2%}")
    assert len(result.holdout_people) == 5 and result.unknown_queries == 50
    assert result.unknown_rate >= 0.95, result.false_accepts
    assert result.queries == 175 and result.rate >= 0.995
    assert result.rate_at_threshold >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_plain_redis_query_returns_the_persons_document(store, faceset, model):
    _enrol_split(store, faceset, model)
    query = faceset.vectors[_orl("s7", 8)]
    field = "embedding" if model == "hash" else "embeddings"
    reply = store.client.execute_command(
        "FT.SEARCH", "face_idx", f"*=>[KNN 1 @{field} $vec AS score]",
        "PARAMS", 2, "vec", query.astype(np.float32).tobytes(), "DIALECT", 2,
    )
    if isinstance(reply, dict):  # RESP3
        rows = [(r[b"id"], r[b"extra_attributes"]) for r in reply[b"results"]]
    else:
        rows = [(reply[1], dict(zip(reply[2][::2], reply[2][1::2], strict=True)))]
    assert len(rows) == 1
    key, attrs = rows[0]
    assert float(attrs[b"score"]) < F.DEFAULT_THRESHOLD
    if model == "hash":
        assert key.decode().startswith("face:s7:")
        stored = store.client.hgetall(key)
        assert set(stored) == {b"person_id", b"person_path", b"embedding"}
        assert stored[b"person_id"] == b"s7" and len(stored[b"embedding"]) == 128 * 4
        assert stored[b"person_path"].decode().endswith(tuple(f"/s7/{n}.bmp" for n in range(1, 6)))
    else:
        assert key == b"face:s7"
        doc = json.loads(attrs[b"$"])
        assert doc["person_id"] == "s7"
        assert np.asarray(doc["embeddings"]).shape == (5, 128)
        assert store.client.type("face:s7") in (b"ReJSON-RL", "ReJSON-RL")
    assert len(store.client.keys("face:*")) == (200 if model == "hash" else 40)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_enrol_a_new_person_and_add_images_at_runtime(store, faceset, model):
    _enrol_split(store, faceset, model, skip={"s40"})
    assert F.identify_vector(store, faceset.vectors[_orl("s40", 7)]).person is None

    result = F.enroll(store, {"s40": [_orl("s40", n) for n in range(1, 6)]})
    assert (result.model, result.people, result.faces) == (model, ["s40"], 5)
    answer = F.identify(store, _orl("s40", 7), k=3)
    assert answer.person == "s40" and answer.known and len(answer.matches) == 3
    assert answer.matches[0].distance < answer.matches[1].distance

    F.add_images(store, "s40", [_orl("s40", 9)])
    again = F.identify(store, _orl("s40", 9))
    assert again.person == "s40" and again.distance < 1e-4
    if model == "hash":
        assert again.matches[0].path.endswith("/s40/9.bmp")
        assert store.client.exists("face:s40:9")
    else:
        # (not client.json(): it re-registers redis-py's reply callbacks on the shared client)
        assert store.client.execute_command("JSON.ARRLEN", "face:s40", "$.embeddings") == [6]
    # Enrolling the same images again stores nothing twice.
    F.enroll(store, {"s40": [_orl("s40", 9)]})
    assert F.remove_person(store, "s40") == 6
    assert F.identify(store, _orl("s40", 7)).person is None


@pytest.mark.slow
def test_switching_model_recreates_the_gallery(store, faceset):
    _enrol_split(store, faceset, "hash")
    assert len(store.client.keys("face:*")) == 200
    _enrol_split(store, faceset, "json")
    assert F.current_model(store) == "json"
    assert len(store.client.keys("face:*")) == 40


# -- small end-to-end paths (a few faces encoded) ---------------------------------------


@pytest.fixture
def small_orl(tmp_path) -> Path:
    """Three people, three images each, in the ORL layout."""
    root = tmp_path / "orl"
    for person in ("s1", "s2", "s3"):
        (root / person).mkdir(parents=True)
        for n in (1, 2, 3):
            shutil.copy(_orl(person, n), root / person / f"{n}.bmp")
    return root


def test_evaluate_from_a_directory_times_each_query(store, small_orl):
    result = evaluate(store, small_orl, model="json", enrolled=1, namespace="small")
    assert result.queries == 6 and result.rate >= 5 / 6
    t = result.timings
    assert t["identify_ms_p50"] >= t["search_ms_p50"] > 0
    assert t["enroll_faces_per_s"] > 0 and t["enrolled_faces"] == 3


def test_bad_inputs_give_clear_errors(store, small_orl, tmp_path):
    ns = "bad"
    with pytest.raises(NotFoundError, match="no faces enrolled"):
        F.identify(store, _orl("s1", 1), namespace=ns)
    F.enroll(store, small_orl, model="hash", namespace=ns)
    before = store.index("bad_idx").count()
    assert before == 9

    text = tmp_path / "notes.bmp"
    text.write_text("not an image at all")
    with pytest.raises(InvalidInput, match="is not an image"):
        F.identify(store, text, namespace=ns)
    with pytest.raises(InvalidInput, match="is not an image"):
        F.identify(store, b"\x00\x01garbage", namespace=ns)

    corrupt = small_orl / "s2" / "4.bmp"
    corrupt.write_bytes(_orl("s2", 4).read_bytes()[:3000])  # a truncated BMP
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        F.enroll(store, small_orl, namespace=ns)
    assert store.index("bad_idx").count() == before  # nothing was written

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="no images found"):
        F.enroll(store, empty, namespace=ns)
    with pytest.raises(NotFoundError, match="no such directory"):
        F.enroll(store, tmp_path / "missing", namespace=ns)
    with pytest.raises(NotFoundError, match="no such file"):
        F.identify(store, tmp_path / "missing.bmp", namespace=ns)
    with pytest.raises(NotFoundError, match="no enrolled person 'nobody'"):
        F.add_images(store, "nobody", [_orl("s1", 4)], namespace=ns)
    with pytest.raises(NotFoundError, match="no enrolled person"):
        F.remove_person(store, "nobody", namespace=ns)
    with pytest.raises(InvalidInput, match="storage model"):
        F.enroll(store, small_orl / "s1", model="sql", namespace=ns)
    with pytest.raises(InvalidInput, match="bad person id"):
        F.enroll(store, {"two words": [_orl("s1", 1)]}, namespace=ns)
    with pytest.raises(InvalidInput, match="k must be"):
        F.identify_vector(store, np.zeros(128, np.float32) + 0.1, k=0, namespace=ns)
    with pytest.raises(InvalidInput, match="threshold"):
        F.identify_vector(store, np.zeros(128, np.float32) + 0.1, threshold=-1, namespace=ns)
    with pytest.raises(InvalidInput):
        FaceEncoder(upsample=9)


# -- the CLI ----------------------------------------------------------------------------


def _url(store: Store) -> str:
    kw = store.client.connection_pool.connection_kwargs
    return f"redis://:{kw['password']}@{kw['host']}:{kw['port']}"


def test_cli_enroll_identify_and_errors(store, small_orl, tmp_path):
    from click.testing import CliRunner

    from redrec.cli_faces import faces

    env = {"REDIS_URL": _url(store), "REDREC_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    ns = ["--namespace", "cli"]
    out = runner.invoke(faces, ["enroll", str(small_orl), "--model", "json", "--json", *ns],
                        env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["faces"] == 9

    out = runner.invoke(faces, ["identify", str(_orl("s2", 5)), "-k", "2", "--json", *ns],
                        env=env)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["person"] == "s2" and len(data["matches"]) == 2

    out = runner.invoke(faces, ["identify", str(_orl("s30", 5)), *ns], env=env)
    assert out.exit_code == 0 and out.stdout.startswith("unknown")

    bad = tmp_path / "x.png"
    bad.write_text("hello")
    out = runner.invoke(faces, ["identify", str(bad), *ns], env=env)
    assert out.exit_code == 1
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
    out = runner.invoke(faces, ["add", "nobody", str(_orl("s1", 1)), *ns], env=env)
    assert out.exit_code == 1 and "no enrolled person" in out.stderr
