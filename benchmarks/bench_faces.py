"""Face recognition benchmark on the ORL faces (40 people x 10 images), both storage models.

* quality: recognition rate (KNN 1) on the 5/5 split (images 1-5 enrolled, 6-10 queried)
  and the harder 1/9 split (image 1 enrolled, 2-10 queried); the threshold calibrated
  from the 5/5 distances; the "unknown" rate with 5 people held out, over 8 disjoint
  folds (every person held out once) and for seed 0 alone;
* speed: encode time per face, enrol throughput (faces/s, encode + write, through
  ``enroll``), identify latency p50/p99 (encode + search, through ``identify``) and the
  search part alone.

Everything runs in a private embedded Redis. Seeded; prints one JSON line.

    python benchmarks/bench_faces.py [--queries 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentiles_ms  # noqa: E402

from redrec.apps import faces as F  # noqa: E402
from redrec.apps.faces_eval import (  # noqa: E402
    ORL_DIR,
    calibrate_threshold,
    distance_profile,
    encode_faceset,
    evaluate,
)
from redrec.runtime import connect  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ORL_DIR))
    ap.add_argument("--queries", type=int, default=100,
                    help="identify() calls timed per model (a seeded sample of the 5/5 queries)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    encoder = F.default_encoder()
    encoder.encode([next(Path(args.data).glob("*/1.bmp"))])  # load the models untimed
    faceset = encode_faceset(args.data, encoder)
    names = list(faceset.people)

    genuine, impostor = distance_profile(faceset, enrolled=5)
    threshold = calibrate_threshold(genuine, impostor)
    gen_1_9, imp_1_9 = distance_profile(faceset, enrolled=1)
    record: dict = {
        "faces": faceset.size, "people": len(names),
        "encode_ms_per_face": round(faceset.encode_seconds / faceset.size * 1000, 2),
        "face_detected_fraction": round(float(np.mean(list(faceset.detected.values()))), 4),
        "threshold": {
            "calibrated_5_5": round(threshold, 4), "default": F.DEFAULT_THRESHOLD,
            "genuine_max_5_5": round(float(genuine.max()), 4),
            "impostor_min_5_5": round(float(impostor.min()), 4),
            "false_reject_1_9_at_default": round(float((gen_1_9 >= F.DEFAULT_THRESHOLD).mean()), 4),
            "false_accept_1_9_at_default": round(float((imp_1_9 < F.DEFAULT_THRESHOLD).mean()), 4),
        },
    }
    rng = random.Random(args.seed)
    shuffled = rng.sample(names, len(names))
    folds = [shuffled[i:i + 5] for i in range(0, len(names), 5)]

    with connect(ephemeral=True) as store:
        record["redis_version"] = store.server_info()["redis_version"]
        for model in F.MODELS:
            out: dict = {}
            for label, enrolled in (("5_5", 5), ("1_9", 1)):
                r = evaluate(store, faceset, model=model, enrolled=enrolled)
                out[f"rate_{label}"] = r.rate
                out[f"rate_at_threshold_{label}"] = round(r.rate_at_threshold, 4)
                out[f"misses_{label}"] = [f"{Path(m.path).parent.name}/{Path(m.path).name}->{m.got}"
                                          for m in r.misses]
            # Unknown faces: 5 people out of enrolment, 8 disjoint folds.
            unknown = correct = total_unknown = total = 0
            false_accepts = []
            for fold in folds:
                r = evaluate(store, faceset, model=model, enrolled=5, holdout=fold)
                unknown += r.unknown_correct
                total_unknown += r.unknown_queries
                correct += r.correct_at_threshold
                total += r.queries
                false_accepts += [f"{Path(m.path).parent.name}->{m.got}" for m in r.false_accepts]
            seed0 = evaluate(store, faceset, model=model, enrolled=5, holdout=5, seed=args.seed)
            out["unknown_rate_8_folds"] = round(unknown / total_unknown, 4)
            out["enrolled_rate_at_threshold_8_folds"] = round(correct / total, 4)
            out["false_accepts_8_folds"] = false_accepts
            out["unknown_rate_seed"] = seed0.unknown_rate
            out["held_out_seed"] = seed0.holdout_people

            # Speed through the public API, images in and out.
            split = {p: files[:5] for p, files in faceset.people.items()}
            t = time.perf_counter()
            res = F.enroll(store, split, model=model, reset=True, encoder=encoder)
            out["enroll_faces_per_s"] = round(res.faces / (time.perf_counter() - t), 2)
            out["enroll_write_faces_per_s"] = round(res.faces / res.write_seconds, 1)
            queries = [q for files in faceset.people.values() for q in files[5:]]
            sample = random.Random(args.seed).sample(queries, min(args.queries, len(queries)))
            lat, search, right = [], [], 0
            for q in sample:
                t = time.perf_counter()
                answer = F.identify(store, q, k=1, encoder=encoder)
                lat.append(time.perf_counter() - t)
                right += answer.person == q.parent.name
                t = time.perf_counter()
                F.identify_vector(store, faceset.vectors[q], k=1)
                search.append(time.perf_counter() - t)
            out["identify"] = percentiles_ms(lat)
            out["search_only"] = percentiles_ms(search)
            out["identify_sample_accuracy"] = right / len(sample)
            record[model] = out
    emit("faces", record)


if __name__ == "__main__":
    main()
