"""Memory for a program: aligned fresh outputs, and the slots intermediates share."""

from __future__ import annotations

import numpy as np

from ...ir.types import TensorType

# Fresh outputs start on a cache line, so kernels may write them with aligned streaming stores.
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array whose data starts on an ALIGNMENT-byte boundary."""
    n = TensorType(tuple(shape)).numel
    raw = np.empty(n + ALIGNMENT // 4, np.float32)
    skip = (-raw.ctypes.data % ALIGNMENT) // 4
    return raw[skip:skip + n].reshape(shape)


def assign_slots(steps, root: dict[str, str], types: dict[str, TensorType],
                 intermediates: list[str]) -> tuple[dict[str, int], list[int]]:
    """(slot of each intermediate, capacity of each slot in floats): each intermediate takes a slot
    no live value holds (greedy, in step order); slots grow to their largest tenant."""
    order = [s for s in steps if s.kind != "alias"]
    last_use: dict[str, int] = {}
    for i, s in enumerate(order):
        last_use.setdefault(s.node.name, i)
        for o in s.node.operands:
            last_use[root[o]] = i
    capacity: list[int] = []
    slot_of: dict[str, int] = {}
    free: list[int] = []
    busy: list[tuple[int, int]] = []                  # (last use, slot)
    wanted = set(intermediates)
    for i, s in enumerate(order):
        for entry in [b for b in busy if b[0] < i]:
            busy.remove(entry)
            free.append(entry[1])
        r = s.node.name
        if r not in wanted:
            continue
        need = types[r].numel
        fits = [j for j in free if capacity[j] >= need]
        if fits:
            slot = min(fits, key=lambda j: capacity[j])
        elif free:
            slot = max(free, key=lambda j: capacity[j])
            capacity[slot] = need
        else:
            slot = len(capacity)
            capacity.append(need)
        if slot in free:
            free.remove(slot)
        slot_of[r] = slot
        busy.append((last_use[r], slot))
    return slot_of, capacity
