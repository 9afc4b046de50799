"""A small shop with a known geometry, for engine tests: items of three categories whose
vectors sit around three orthogonal directions, so "similar" has a checkable meaning.

The encoder is a real (if tiny) one: it turns an item's text into its vector by the
category words it contains, deterministically. No Redis behaviour is simulated."""

from __future__ import annotations

import hashlib

import numpy as np

CATEGORIES = ["scifi", "romance", "cooking"]
DIM = 16


class KeywordEncoder:
    name = "keyword-encoder-v1"
    dim = DIM

    def encode(self, texts, *, progress=False):
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for n, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            rng = np.random.default_rng(seed)
            v = rng.normal(scale=0.25, size=DIM)
            for c, cat in enumerate(CATEGORIES):
                if cat in text:
                    v[c * 4:(c + 1) * 4] += 1.0
            out[n] = v / np.linalg.norm(v)
        return out


def shop_items(per_category: int = 20) -> list[dict]:
    items = []
    for c, cat in enumerate(CATEGORIES):
        for i in range(per_category):
            n = c * per_category + i
            items.append({
                "id": f"p{n}", "name": f"{cat} product {i}", "category": cat,
                "description": f"a {cat} item number {i}", "price": float(5 + (n * 7) % 50),
                "in_stock": "yes" if n % 5 else "no",
                "store": f"{2.30 + 0.02 * (n % 10):.3f},48.85",
            })
    return items


SHOP_MAPPING = {
    "index": "shop_idx",
    "prefix": "shop:",
    "storage": "json",
    "id": "id",
    "text": {"field": "vec", "source": ["description"]},
    "vector": {"algorithm": "flat", "metric": "cosine"},
    "fields": {"id": "tag", "name": "text", "category": "tag", "price": "numeric",
               "in_stock": "tag", "store": "geo"},
}
