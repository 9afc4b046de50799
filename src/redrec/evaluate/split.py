"""Leave-one-out by time: each user's last item is the test item, the one before it validation.

This is the protocol of the sequential-recommendation literature (SASRec, BERT4Rec,
RecBole), so numbers computed here can be compared with published ones. Models are
trained on ``train`` (every user's sequence minus the two held-out items); a case's
``history`` is what serving would know at request time, so the test history includes
the validation item even though no model was trained on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redrec.exceptions import InvalidInput

__all__ = ["EvalCase", "LeaveOneOut", "leave_one_out"]


@dataclass(frozen=True)
class EvalCase:
    """One held-out prediction: given ``history`` (oldest first), rank ``target``."""

    user: str
    history: Sequence[str]
    target: str


@dataclass(frozen=True)
class LeaveOneOut:
    """A leave-one-out split; ``sequences`` are the full, unsplit sequences it came from."""

    train: dict[str, list[str]]
    valid: list[EvalCase]
    test: list[EvalCase]
    sequences: Mapping[str, Sequence[str]]

    def catalogue(self) -> list[str]:
        """Items seen in training, in order of first appearance: what models can rank."""
        seen: dict[str, None] = {}
        for items in self.train.values():
            seen.update(dict.fromkeys(items))
        return list(seen)

    def n_train_events(self) -> int:
        return sum(len(items) for items in self.train.values())


def leave_one_out(sequences: Mapping[str, Sequence[str]], *, min_length: int = 3) -> LeaveOneOut:
    """Split chronological sequences; users with fewer than ``min_length`` go to training only.

    ``min_length`` must be at least 3 so an evaluated user keeps one training item.
    """
    if min_length < 3:
        raise InvalidInput(f"min_length must be >= 3, got {min_length}")
    train: dict[str, list[str]] = {}
    valid: list[EvalCase] = []
    test: list[EvalCase] = []
    for user, items in sequences.items():
        items = list(items)
        if len(items) < min_length:
            train[user] = items
            continue
        train[user] = items[:-2]
        valid.append(EvalCase(user=user, history=items[:-2], target=items[-2]))
        test.append(EvalCase(user=user, history=items[:-1], target=items[-1]))
    return LeaveOneOut(train=train, valid=valid, test=test, sequences=sequences)
