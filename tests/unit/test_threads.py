"""``--threads``: one number for torch, implicit and BLAS, restored afterwards."""

from __future__ import annotations

import os

import pytest

from redrec.exceptions import InvalidInput
from redrec.models.threads import check_threads, default_threads, thread_limits


def test_default_is_the_cpus_this_process_may_use():
    assert default_threads() == len(os.sched_getaffinity(0))
    assert check_threads(None) == default_threads()


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "2"])
def test_bad_counts_are_invalid_input(bad):
    with pytest.raises(InvalidInput, match="--threads must be an integer >= 1"):
        check_threads(bad)


def test_limits_apply_inside_and_restore_after():
    torch = pytest.importorskip("torch")
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas() -> set[int]:
        return {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}

    before_torch, before_blas = torch.get_num_threads(), blas()
    with thread_limits(1, torch=True) as n:
        assert n == 1
        assert torch.get_num_threads() == 1
        assert blas() <= {1}
    assert torch.get_num_threads() == before_torch and blas() == before_blas
