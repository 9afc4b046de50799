"""How many threads training and evaluation may use.

Torch, ``implicit`` and the BLAS under numpy each start their own pool, sized to every
core of the machine by default. On a shared or container-limited machine that
oversubscribes the cores (on this project's 2-core VM, 2 torch threads under load
trained the tower 2.5 to 5 times slower than 1), so ``redrec train`` and ``redrec
evaluate`` take one ``--threads`` number and this module applies it to all three.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from redrec.exceptions import InvalidInput

__all__ = ["check_threads", "default_threads", "thread_limits"]


def default_threads() -> int:
    """The CPUs this process may run on: the affinity mask, not ``os.cpu_count()``,
    because a container or ``taskset`` can allow fewer cores than the machine has."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int | None) -> int:
    """``threads`` validated (``None`` means :func:`default_threads`)."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInput(f"--threads must be an integer >= 1, got {threads!r}")
    return threads


@contextmanager
def thread_limits(threads: int | None, *, torch: bool = False) -> Iterator[int]:
    """Run the block with ``threads`` BLAS threads (through threadpoolctl, when it is
    installed) and, with ``torch=True``, ``threads`` torch intra-op threads; both are
    restored afterwards so a library caller's own settings survive. Yields the count,
    which callers also pass to ``implicit`` (ALS ``num_threads``)."""
    n = check_threads(threads)
    with ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: not a dependency of redrec itself
            pass
        else:
            stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
        if torch:
            stack.enter_context(_torch_threads(n))
        yield n


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    try:
        import torch
    except ImportError:  # the model that needs torch reports its absence itself
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
