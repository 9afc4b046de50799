"""The `redrec` command line end to end: a real long-lived embedded server, real
subprocesses, data on stdout, one-line errors on stderr with exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import redrec
from redrec.catalog import ingest
from redrec.config import Settings
from redrec.server import start_daemon, stop_daemon
from tests.support.shop import SHOP_MAPPING, KeywordEncoder, shop_items

REDREC = str(Path(sys.executable).parent / "redrec")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    start_daemon(home, home / "redis")
    with redrec.connect(Settings(home=home)) as store:
        ingest(store, SHOP_MAPPING, shop_items(), encoders={"text": KeywordEncoder()})
    yield home
    stop_daemon(home)


def run(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDREC_HOME": str(home)}
    env.pop("REDIS_URL", None)
    proc = subprocess.run([REDREC, *args], capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_server_status(home):
    out = json.loads(run(home, "server", "status", "--json").stdout)
    assert out["running"] is True and out["host"] == "127.0.0.1"


def test_index_describe_and_list(home):
    info = json.loads(run(home, "index", "describe", "shop_idx", "--json").stdout)
    assert info["num_docs"] == 60 and info["storage"] == "json"
    assert "shop_idx__v1" in run(home, "index", "list").stdout


def test_track_recommend_and_filters(home):
    for item in ("shop:p1", "shop:p2", "p3"):
        out = json.loads(run(home, "track", "cli-u1", item, "view", "--json").stdout)
        assert out["applied"] is True
    recs = json.loads(run(home, "recommend", "cli-u1", "-k", "5", "--json").stdout)
    assert len(recs) == 5 and all(r["fields"]["category"] == "scifi" for r in recs)
    assert all(r["reasons"] for r in recs)
    cooking = json.loads(run(home, "recommend", "cli-u1", "--filter", "category=cooking",
                             "--filter", "price<=30", "--json").stdout)
    assert cooking and all(r["fields"]["category"] == "cooking" for r in cooking)
    text = run(home, "recommend", "cli-u1", "-k", "3").stdout
    assert text.count("\n") == 3 and "scifi product" in text


def test_purchase_is_never_recommended(home):
    run(home, "track", "cli-u2", "p5", "view")
    run(home, "track", "cli-u2", "p6", "purchase", "--id", "order-1")
    again = json.loads(run(home, "track", "cli-u2", "p6", "purchase", "--id", "order-1",
                           "--json").stdout)
    assert again["applied"] is False
    recs = json.loads(run(home, "recommend", "cli-u2", "-k", "30", "--json").stdout)
    assert "p6" not in {r["item_id"] for r in recs}


def test_stream_and_worker(home):
    out = json.loads(run(home, "track", "cli-u3", "p7", "click", "--stream", "--json").stdout)
    assert out["queued"] is True
    stats = json.loads(run(home, "worker", "--idle-exit", "0.5", "--json").stdout)
    assert stats["applied"] >= 1
    with redrec.connect(Settings(home=home)) as store:
        from redrec.engine.setup import open_engine

        assert open_engine(store, "shop_idx").state("cli-u3").recent == ["p7"]


def test_similar_and_within(home):
    sims = json.loads(run(home, "similar", "shop:p1", "-k", "4", "--json").stdout)
    assert len(sims) == 4 and "p1" not in {s["id"] for s in sims}
    assert all(s["fields"]["category"] == "scifi" for s in sims)
    near = json.loads(run(home, "within", "shop:p1", "--radius", "0.6", "--json").stdout)
    assert all(n["distance"] <= 0.6 for n in near)


def test_user_attributes(home):
    run(home, "track", "cli-u5", "p7", "view")
    out = json.loads(run(home, "user", "cli-u5", "--age", "34", "--gender", "F",
                         "--occupation", "nurse", "--loc", "2.35,48.85", "--json").stdout)
    assert out["attributes"] == {"age": "34", "gender": "F", "occupation": "nurse",
                                 "loc": "2.35,48.85"}
    assert out["events"] == 1 and out["recent"] == ["p7"]


@pytest.mark.parametrize("args,message", [
    (("user", "u", "--loc", "somewhere"), "loc must be"),
    (("user", "u", "--age", "-3"), "age must be between"),
    (("track", "u", "p1", "wink"), "unknown event type"),
    (("track", "u", "shop:nope", "view"), "unknown item"),
    (("track", "u", "p1", "view", "--time", "tomorrow-ish"), "bad timestamp"),
    (("track", "u", "p1", "view", "--context", "{bad"), "not valid JSON"),
    (("recommend", "u", "--filter", "colour=red"), "no field 'colour'"),
    (("recommend", "u", "--filter", "price>cheap"), "not a number"),
    (("similar", "shop:nope"), "no item"),
    (("index", "describe", "nope"), "no index named 'nope'"),
    (("recommend", "u", "--catalog", "nope"), "no catalogue 'nope'"),
])
def test_errors_are_one_line_and_exit_1(home, args, message):
    proc = run(home, *args, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_usage_errors_exit_2(home):
    proc = run(home, "recommend", ok=False)
    assert proc.returncode == 2


def test_unreachable_redis_url(tmp_path):
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "REDREC_HOME": str(tmp_path)}
    proc = subprocess.run([REDREC, "index", "list"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot reach Redis")


def _walks(tmp_path: Path) -> Path:
    """A tiny 'user item' log: 30 users, 6 steps each along a0, a1, ..."""
    log = tmp_path / "walks.txt"
    log.write_text("".join(f"u{u} a{u % 10 + n}\n" for u in range(30) for n in range(6)))
    return log


def test_threads_option_for_train_and_evaluate(home, tmp_path):
    log = _walks(tmp_path)
    als = json.loads(run(home, "train", str(log), "--model", "als", "--threads", "1",
                         "--no-publish", "--json").stdout)
    assert als["threads"] == 1 and als["items"] == 15
    tower = json.loads(run(home, "train", str(log), "--epochs", "1", "--threads", "2",
                           "--no-publish", "--json").stdout)
    assert tower["threads"] == 2 and tower["model"] == "tower"
    report = json.loads(run(home, "evaluate", str(log), "--models", "popularity,als",
                            "--threads", "1", "--out", str(tmp_path / "ev"), "--json").stdout)
    assert report["threads"] == 1 and set(report["results"]) == {"popularity", "als"}
    default = json.loads(run(home, "evaluate", str(log), "--models", "popularity",
                             "--out", str(tmp_path / "ev2"), "--json").stdout)
    assert default["threads"] == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_threads_below_one_is_an_error(home, tmp_path, command, value):
    proc = run(home, command, str(_walks(tmp_path)), "--threads", value, ok=False)
    assert proc.returncode == 1
    assert proc.stderr == f"error: --threads must be an integer >= 1, got {value}\n"
