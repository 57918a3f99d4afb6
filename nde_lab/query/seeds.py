"""Independent seed streams: one child of `numpy.random.SeedSequence(seed)` per batch or block.

`seed + b` streams overlap (seed 1's batch 1 is seed 2's batch 0); children of a `SeedSequence`
are independent by construction, so answers for different seeds are independent and a block's
draws depend only on (seed, block index), never on how blocks are grouped into batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["child_seed", "child_seeds"]


def child_seed(seed: int, *index: int) -> int:
    """The integer seed of child `index` (a path in the spawn tree) of `SeedSequence(seed)`, in [0, 2**63)."""
    state = np.random.SeedSequence(int(seed), spawn_key=tuple(int(i) for i in index)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def child_seeds(seed: int, *prefix: int) -> Iterator[int]:
    """child_seed(seed, *prefix, 0), child_seed(seed, *prefix, 1), ... (an endless stream)."""
    b = 0
    while True:
        yield child_seed(seed, *prefix, b)
        b += 1
