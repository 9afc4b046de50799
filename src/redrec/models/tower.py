"""The user tower: a self-attentive sequence encoder (SASRec, Kang & McAuley 2018).

A user's recent items go through item + position embeddings and a few causal transformer
blocks; the output at the last position is the user vector, scored against the item
embedding table by inner product. That table is the item vectors served from Redis, so
recommending is one KNN query with a vector computed from the user's *current* sequence:
a new action changes the next recommendation at once.

Training is two-tower style: every position of every training sequence predicts the next
item with a softmax over the whole catalogue ("full"), or, for large catalogues, over the
target plus shared negatives drawn half uniformly, half by popularity, with logQ
correction ("sampled"). Cross-entropy over many negatives is what makes SASRec strong
(Klenitskiy & Vasilev 2023); on ML-100k's validation items the full softmax also beat a
256-negative sampled softmax clearly (NDCG@10 about 0.12 against 0.10).

Torch is needed only to train. Weights are saved as numpy arrays and the forward pass
at request time is numpy, so serving loads a tower without torch and one user vector
takes well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Self

import numpy as np

from redrec.exceptions import ConfigError, InvalidInput
from redrec.models.base import VectorRecommender, index_items

__all__ = ["TowerConfig", "UserTower"]


@dataclass(frozen=True, kw_only=True)
class TowerConfig:
    """Hyperparameters. The defaults were chosen on ML-100k's validation items (never
    the test items) under a few-minutes-on-2-cores budget; see ``benchmarks/learning``.

    ``loss="auto"`` trains with the full softmax up to ``full_softmax_items`` items and
    with a sampled softmax (``negatives`` shared negatives per batch, logQ-corrected)
    above, which bounds time and memory per step on large catalogues.
    ``schedule="constant"`` keeps the learning rate after a short warm-up; ``"cosine"``
    decays it to zero (it lost on ML-100k at a 30-epoch budget: still underfit there).
    ``length_buckets`` batches windows of similar length together, which skips most of
    the padding work on logs of short sequences but cost about 0.007 validation NDCG@10
    on ML-100k (3 seeds); ``None`` turns it on only when padding is most of the work.
    """

    dim: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: str = "auto"
    negatives: int = 1024
    full_softmax_items: int = 10_000
    schedule: str = "constant"
    length_buckets: bool | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("dim", "layers", "heads", "max_len", "epochs", "batch_size", "negatives")
        for name in positive:
            if getattr(self, name) < 1:
                raise InvalidInput(f"TowerConfig.{name} must be >= 1")
        if self.dim % self.heads:
            raise InvalidInput("TowerConfig.dim must be a multiple of heads")
        if not 0.0 <= self.dropout < 1.0 or self.lr <= 0:
            raise InvalidInput("TowerConfig needs 0 <= dropout < 1 and lr > 0")
        if self.loss not in ("auto", "full", "sampled"):
            raise InvalidInput(f"TowerConfig.loss must be auto, full or sampled: {self.loss!r}")
        if self.schedule not in ("constant", "cosine"):
            raise InvalidInput(f"TowerConfig.schedule must be constant or cosine: {self.schedule!r}")


class UserTower(VectorRecommender):
    """SASRec-style user tower over item ids; item vectors are its item embeddings."""

    kind = "tower"

    def __init__(self, config: TowerConfig | None = None, **overrides: Any):
        super().__init__()
        self.config = replace(config or TowerConfig(), **overrides)
        self._w: dict[str, np.ndarray] = {}
        self._serve: dict[str, np.ndarray] = {}

    # --- serving ---------------------------------------------------------------------

    def item_vectors(self) -> np.ndarray:
        return self._w["items"][1:]

    def user_vector(self, history: Sequence[str]) -> np.ndarray:
        """The user vector after ``history`` (oldest first; the last ``max_len`` known
        items are used). With no known item it is the learned cold-start vector, whose
        scores follow item popularity in training."""
        return self.user_vectors([history])[0]

    def user_vectors(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        self._check_fitted()
        out = np.empty((len(histories), self.config.dim), dtype=np.float32)
        rows = [np.asarray(self._rows(h), dtype=np.int64)[-self.config.max_len :] + 1 for h in histories]
        order = np.argsort([len(r) for r in rows], kind="stable")
        # Batches of similar length waste little work on padding.
        for start in range(0, len(order), 256):
            chunk = order[start : start + 256]
            out[chunk] = _forward(self._serve, [rows[i] for i in chunk], self.config)
        return out

    # --- training --------------------------------------------------------------------

    def fit(
        self,
        sequences: Mapping[str, Sequence[str]],
        *,
        show_progress: bool = False,
        validation: Sequence[Any] | None = None,
    ) -> Self:
        """Train on chronological sequences for ``config.epochs`` epochs.

        ``validation`` (cases with ``history`` and ``target``, e.g. a leave-one-out
        split's ``valid``) turns on best-epoch selection by NDCG@10 on those cases,
        checked every 10 epochs.
        """
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("the user tower needs torch: pip install 'redrec[train]'") from exc
        cfg = self.config
        item_ids, index = index_items(sequences)
        self._set_items(item_ids)
        seqs = [np.asarray([index[i] + 1 for i in s], dtype=np.int64) for s in sequences.values()]
        inputs, targets = _windows(seqs, cfg.max_len)
        if not len(inputs):
            raise InvalidInput("the tower needs at least one user with two or more items")
        n_items = len(item_ids)
        full = cfg.loss == "full" or (cfg.loss == "auto" and n_items <= cfg.full_softmax_items)
        counts = np.bincount(targets.ravel(), minlength=n_items + 1)[1:].astype(np.float64)
        sampler = None if full else _negative_distribution(counts)
        fill = float((inputs > 0).mean())
        bucket = cfg.length_buckets if cfg.length_buckets is not None else fill < 0.5

        def check(weights: dict[str, np.ndarray]) -> float:
            from redrec.evaluate.metrics import evaluate

            self._set_weights(weights | {"empty": np.zeros(cfg.dim, dtype=np.float32)})
            return evaluate(self, validation or [], catalogue=self._item_ids)["NDCG@10"]

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = _network(torch)(n_items, cfg)
            weights = _train(
                torch,
                net,
                (inputs, targets),
                cfg,
                sampler,
                bucket,
                show_progress,
                check if validation else None,
            )
            weights["empty"] = _cold_start(torch, weights["items"][1:], counts)
        self._set_weights(weights)
        self.metadata = {
            "loss": "full" if full else "sampled",
            "windows": len(inputs),
            "window_fill": round(fill, 3),
            "length_buckets": bucket,
        }
        return self

    # --- persistence -----------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return asdict(self.config)

    def _arrays(self) -> dict[str, np.ndarray]:
        return dict(self._w)

    @classmethod
    def _restore(cls, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        model = cls(TowerConfig(**params))
        model._set_weights(dict(arrays))
        return model

    def _set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self._serve = _serving_weights(self._w)


# --- data ------------------------------------------------------------------------------


def _windows(seqs: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (input, next-item target) windows covering every transition once.

    Long sequences are cut from the end into windows of ``max_len`` transitions, so a
    user with 700 items trains on all of them, not only the last ``max_len``.
    """
    inputs, targets = [], []
    for seq in seqs:
        for end in range(len(seq), 1, -max_len):
            start = max(0, end - max_len - 1)
            window = seq[start:end]
            pad = max_len + 1 - len(window)
            padded = np.concatenate([np.zeros(pad, dtype=np.int64), window])
            inputs.append(padded[:-1])
            targets.append(padded[1:])
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)


# --- numpy forward (serving) -------------------------------------------------------------


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def _forward(w: Mapping[str, np.ndarray], rows: Sequence[np.ndarray], cfg: TowerConfig) -> np.ndarray:
    """User vectors for sequences of 1-based item rows (numpy mirror of the torch net).

    ``w`` holds linear weights already transposed (see :func:`_serving_weights`). The
    last block computes only the last position, the one that becomes the user vector.
    """
    out = np.empty((len(rows), cfg.dim), dtype=np.float32)
    live = [i for i, r in enumerate(rows) if len(r)]
    out[[i for i, r in enumerate(rows) if not len(r)]] = w["empty"]
    if not live:
        return out
    t = max(len(rows[i]) for i in live)
    tokens = np.zeros((len(live), t), dtype=np.int64)
    for j, i in enumerate(live):
        tokens[j, t - len(rows[i]) :] = rows[i]
    b, d, heads = len(live), cfg.dim, cfg.heads
    dh = d // heads
    x = w["items"][tokens] * np.float32(math.sqrt(d)) + w["positions"][cfg.max_len - t :]
    x = x.reshape(b * t, d)
    blocked = ~_mask(tokens > 0)[:, None]
    for layer in range(cfg.layers):
        p = f"blocks.{layer}."
        last = layer == cfg.layers - 1
        qkv = _layer_norm(x, w[p + "ln1.weight"], w[p + "ln1.bias"]) @ w[p + "qkv"] + w[p + "qkv.bias"]
        qkv = qkv.reshape(b, t, 3, heads, dh).transpose(2, 0, 3, 1, 4)
        q = np.ascontiguousarray(qkv[0, :, :, -1:] if last else qkv[0])
        k_t = np.ascontiguousarray(qkv[1].transpose(0, 1, 3, 2))
        scores = q @ k_t * np.float32(1.0 / math.sqrt(dh))
        scores[blocked[:, :, -1:] if last else blocked] = -np.inf
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        att = (scores @ np.ascontiguousarray(qkv[2])).transpose(0, 2, 1, 3).reshape(-1, d)
        if last:
            x = x.reshape(b, t, d)[:, -1]
        x = x + att @ w[p + "out"] + w[p + "out.bias"]
        h = _gelu(_layer_norm(x, w[p + "ln2.weight"], w[p + "ln2.bias"]) @ w[p + "ff1"] + w[p + "ff1.bias"])
        x = x + h @ w[p + "ff2"] + w[p + "ff2.bias"]
    out[live] = _layer_norm(x, w["norm.weight"], w["norm.bias"])
    return out


def _serving_weights(w: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 weights with each linear layer's matrix transposed once (``x @ W``)."""
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}
    for name in [k for k in out if k.endswith(("qkv.weight", "out.weight", "ff1.weight", "ff2.weight"))]:
        out[name.removesuffix(".weight")] = np.ascontiguousarray(out.pop(name).T)
    return out


def _mask(valid: np.ndarray) -> np.ndarray:
    """(b, n, n) causal attention mask; padding is never attended to, except by itself
    (so no row is empty and padded rows stay finite)."""
    n = valid.shape[1]
    causal = np.tril(np.ones((n, n), dtype=bool))
    return causal & (valid[:, None, :] | np.eye(n, dtype=bool))


# --- torch (training) ----------------------------------------------------------------------


def _network(torch: Any) -> Any:
    """The torch module class (built lazily so importing this module needs no torch)."""
    nn = torch.nn
    f = torch.nn.functional

    class Block(nn.Module):  # type: ignore[name-defined]
        def __init__(self, cfg: TowerConfig):
            super().__init__()
            self.heads, self.drop = cfg.heads, cfg.dropout
            self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
            self.qkv, self.out = nn.Linear(cfg.dim, 3 * cfg.dim), nn.Linear(cfg.dim, cfg.dim)
            self.ff1, self.ff2 = nn.Linear(cfg.dim, cfg.dim), nn.Linear(cfg.dim, cfg.dim)

        def forward(self, x: Any, allowed: Any) -> Any:
            b, n, d = x.shape
            q, k, v = (
                t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
                for t in self.qkv(self.ln1(x)).chunk(3, dim=-1)
            )
            drop = self.drop if self.training else 0.0
            att = f.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], dropout_p=drop)
            x = x + f.dropout(self.out(att.transpose(1, 2).reshape(b, n, d)), drop, self.training)
            h = self.ff2(f.dropout(f.gelu(self.ff1(self.ln2(x)), approximate="tanh"), drop, self.training))
            return x + f.dropout(h, drop, self.training)

    class Tower(nn.Module):  # type: ignore[name-defined]
        def __init__(self, n_items: int, cfg: TowerConfig):
            super().__init__()
            self.cfg = cfg
            self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.positions = nn.Embedding(cfg.max_len, cfg.dim)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
            self.norm = nn.LayerNorm(cfg.dim)
            nn.init.normal_(self.items.weight, std=1.0 / math.sqrt(cfg.dim))
            nn.init.normal_(self.positions.weight, std=0.02)
            with torch.no_grad():
                self.items.weight[0].zero_()

        def forward(self, tokens: Any) -> Any:
            valid = tokens > 0
            n = tokens.shape[1]
            x = self.items(tokens) * math.sqrt(self.cfg.dim) + self.positions.weight[-n:]
            x = f.dropout(x, self.cfg.dropout, self.training)
            eye = torch.eye(n, dtype=torch.bool)
            allowed = torch.tril(torch.ones(n, n, dtype=torch.bool)) & (valid[:, None] | eye)
            for block in self.blocks:
                x = block(x, allowed)
            return self.norm(x)

    return Tower


def _train(
    torch: Any,
    net: Any,
    windows: tuple[np.ndarray, np.ndarray],
    cfg: TowerConfig,
    sampler: np.ndarray | None,
    bucket: bool,
    show_progress: bool,
    validate: Callable[[dict[str, np.ndarray]], float] | None,
) -> dict[str, np.ndarray]:
    """Adam over shuffled windows; full softmax, or sampled softmax when ``sampler`` (the
    negative-sampling distribution over items) is given. With ``validate``, the weights of
    the best check (every 10 epochs) are returned instead of the last."""
    from tqdm.auto import tqdm

    f = torch.nn.functional
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(windows[0]) / cfg.batch_size)
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        decay = 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
        return min(1.0, (step + 1) / warmup) * (decay if cfg.schedule == "cosine" else 1.0)

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    x_all, y_all = torch.from_numpy(windows[0]), torch.from_numpy(windows[1])
    lengths = (x_all > 0).sum(dim=1)
    q = torch.from_numpy(sampler.astype(np.float32)) if sampler is not None else None
    best: tuple[float, dict[str, np.ndarray]] | None = None
    bar = tqdm(range(cfg.epochs), disable=not show_progress, desc="tower", unit="epoch")
    for epoch in bar:
        net.train()
        total = 0.0
        for batch in _batches(torch, lengths, cfg.batch_size, bucket):
            x, y = x_all[batch], y_all[batch]
            # Trim the all-padding columns of the batch: less work, same result.
            keep = int((x > 0).any(dim=0).float().argmax())
            x, y = x[:, keep:], y[:, keep:]
            h = net(x)[y > 0]
            target = y[y > 0]
            table = net.items.weight
            if q is None:
                loss = f.cross_entropy(h @ table[1:].T, target - 1)
            else:
                # Sampled softmax with logQ correction (Bengio & Senecal 2008): negatives
                # drawn from q, every logit shifted by -log(k q) so the loss estimates the
                # full softmax; accidental hits of the target are masked out.
                neg = torch.multinomial(q, cfg.negatives, replacement=True)
                log_q = torch.log(q * cfg.negatives)
                pos = (h * table[target]).sum(-1, keepdim=True) - log_q[target - 1, None]
                other = (h @ table[neg + 1].T - log_q[neg]).masked_fill(
                    neg[None] + 1 == target[:, None], -1e9
                )
                loss = f.cross_entropy(torch.cat([pos, other], 1), torch.zeros_like(target))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        bar.set_postfix(loss=f"{total / len(x_all):.4f}")
        if validate is not None and ((epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs):
            weights = _numpy_weights(net)
            score = validate(weights)
            if best is None or score > best[0]:
                best = (score, weights)
    return best[1] if best is not None else _numpy_weights(net)


def _batches(torch: Any, lengths: Any, batch_size: int, bucket: bool) -> list[Any]:
    """Shuffled batches; with ``bucket``, of windows of similar length (sorted within
    pools of 16 batches), so a batch of short windows is trimmed to its own length."""
    if not bucket:
        return list(torch.randperm(len(lengths)).split(batch_size))
    batches = []
    for pool in torch.randperm(len(lengths)).split(batch_size * 16):
        batches.extend(pool[torch.argsort(lengths[pool], stable=True)].split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches)).tolist()]


def _negative_distribution(counts: np.ndarray) -> np.ndarray:
    """Half uniform, half by popularity: popular items are the hard negatives a uniform
    sample misses, the uniform half keeps the long tail in play."""
    return 0.5 / len(counts) + 0.5 * counts / max(counts.sum(), 1.0)


def _cold_start(torch: Any, items: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The user vector for an empty history: the ``u`` whose softmax over ``items @ u``
    best matches how often each item is a training target (so a brand-new user gets
    popular items through the same inner-product search)."""
    table = torch.from_numpy(items.astype(np.float32))
    p = torch.from_numpy((counts / max(counts.sum(), 1.0)).astype(np.float32))
    u = torch.zeros(items.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([u], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = -(p * torch.log_softmax(table @ u, 0)).sum() + 1e-4 * (u * u).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return u.detach().numpy().astype(np.float32)


def _numpy_weights(net: Any) -> dict[str, np.ndarray]:
    return {
        name.removesuffix(".weight") if name in ("items.weight", "positions.weight") else name: value.detach()
        .numpy()
        .astype(np.float32)
        .copy()
        for name, value in net.state_dict().items()
    }
