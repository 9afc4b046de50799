"""`redrec evaluate` end to end on a small log with a known answer, in both formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import redrec
from redrec.engine.setup import open_engine
from redrec.evaluate.runner import run_evaluation
from redrec.exceptions import InvalidInput

pytestmark = pytest.mark.slow


def _log(tmp_path: Path) -> tuple[Path, Path]:
    """Every user walks a0 -> a1 -> ... in order: the next item is always predictable."""
    lines = []
    inter = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(40):
        start = u % 10
        for n in range(6):
            item = f"a{start + n}"
            lines.append(f"u{u} {item}")
            inter.append(f"u{u}\t{item}\t{1000 + n}")
    pairs = tmp_path / "log.txt"
    pairs.write_text("\n".join(lines) + "\n")
    rb = tmp_path / "log.inter"
    rb.write_text("\n".join(inter) + "\n")
    return pairs, rb


def test_served_tower_learns_the_order_in_both_formats(tmp_path):
    pairs, rb = _log(tmp_path)
    results = []
    for path in (pairs, rb):
        report = run_evaluation(path, models=("popularity", "tower"),
                                tower_overrides={"epochs": 40, "dim": 16, "max_len": 8})
        assert report.evaluated_users == 40
        tower = report.results["tower"]
        assert tower["path"] == "served"
        assert tower["full"]["HR@10"] > report.results["popularity"]["full"]["HR@10"]
        assert tower["full"]["HR@10"] >= 0.9  # the next item is always the next in line
        results.append(tower["full"]["NDCG@10"])
    assert results[0] == pytest.approx(results[1])  # same sequences, same answer


def test_cli_writes_table_json_and_plot(tmp_path):
    pairs, _ = _log(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "redrec"), "evaluate", str(pairs), "--models",
         "popularity,als", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "popularity" in proc.stdout and "als" in proc.stdout
    data = json.loads((out / "evaluation.json").read_text())
    assert set(data["results"]) == {"popularity", "als"}
    assert (out / "evaluation.png").stat().st_size > 1000


@pytest.mark.parametrize("content,match", [
    ("", "empty"),
    ("u1 a1 extra\n", "expected 'user item'"),
    ("u1 a1\nu2 a2\n", "nothing to evaluate"),
])
def test_bad_logs(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=match):
        run_evaluation(path, models=("popularity",))


def test_user_file_attributes_are_recorded_for_served_users(tmp_path):
    """A RecBole log with a .user file (MovieLens columns plus one the engine does not
    know): after the served run every user's profile holds its demographics."""
    _, rb = _log(tmp_path)
    rows = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\tshoe:token"]
    rows += [f"u{u}\t{20 + u}\t{'MF'[u % 2]}\t{'writer' if u % 3 else 'artist'}\t{10000 + u}\t42"
             for u in range(38)]
    rows.append("u38\tunknown\tF\t\t02139\t41")  # no usable age, no occupation
    (tmp_path / "log.user").write_text("\n".join(rows) + "\n")  # u39 has no row at all
    with redrec.connect(ephemeral=True) as store:
        report = run_evaluation(rb, models=("tower",), store=store,
                                tower_overrides={"epochs": 1, "dim": 8, "max_len": 8})
        assert "user_attributes_s" in report.timings
        engine = open_engine(store, "eval_items")
        assert engine.state("u1").attributes == {
            "age": "21", "gender": "F", "occupation": "writer", "zip": "10001"}
        assert engine.state("u3").attributes == {
            "age": "23", "gender": "F", "occupation": "artist", "zip": "10003"}
        assert engine.state("u38").attributes == {"gender": "F", "zip": "02139"}
        assert engine.state("u39").attributes == {}
        assert engine.state("u1").events == 5  # attributes first, then the replayed history
