"""A 5x5 median filter as a pruned comparator network (min/max only), for XLA.

OpenCV's TV-L1 filters the flow with `cv::medianBlur(u, u, 5)` (float input, replicated
border) at the start of every outer iteration. Sorting 25 shifted copies with `ops.sort`
is slow on XLA's CPU backend; element-wise `minimum`/`maximum` fuse into one loop.

The network is derived once at import and verified there:

1. each 5-pixel column of the window is sorted by a 9-comparator network (computed once
   per pixel and shared by the 5 windows that contain the column);
2. the 25 values (5 sorted columns) go through Batcher's odd-even merge sort on 32 wires
   (the 7 padding wires hold +inf and are folded away as constants);
3. comparators that never exchange their inputs when the columns are sorted are dropped:
   by the 0-1 principle it suffices to check the 6^5 column-sorted 0-1 inputs (a
   comparator that exchanges some real input also exchanges its 0-1 thresholding);
4. only the comparators (and of those, only the min or max halves) that the median
   wire (rank 12) depends on are kept.

The result is checked exhaustively on those 0-1 inputs at import (an `AssertionError`
would mean a bug here, never a user error).
"""

import itertools

import numpy as np


def pad_edge(x, n):
    """Replicates the `n` border pixels of `[B, H, W]` planes (TF's pad has no "edge")."""
    from keras import ops

    x = ops.concatenate([x[:, :1]] * n + [x] + [x[:, -1:]] * n, axis=1)
    return ops.concatenate([x[:, :, :1]] * n + [x] + [x[:, :, -1:]] * n, axis=2)


_COLUMN_SORT_5 = ((0, 1), (3, 4), (2, 4), (2, 3), (1, 4), (0, 3), (0, 2), (1, 3), (1, 2))


def _batcher(n):
    """Batcher's odd-even merge sort comparators for `n` (a power of 2) wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def _column_sorted_01_inputs():
    """All 0-1 inputs of 25 wires (5 columns x 5 ranks) whose columns are sorted."""
    rows = []
    for zeros in itertools.product(range(6), repeat=5):  # number of 0s in each column
        rows.append([1 if r >= z else 0 for z in zeros for r in range(5)])
    return np.asarray(rows, dtype=np.uint8)


def _build_network():
    """Returns `[(op, out, a, b)]` over value slots: slot 0..24 = the 25 inputs."""
    inputs = _column_sorted_01_inputs()  # [7776, 25]
    n_wires = 32
    # Wire -> slot id (None: +inf). A comparator on (i, j) writes min to i, max to j.
    wire = list(range(25)) + [None] * (n_wires - 25)
    values = {s: inputs[:, s] for s in range(25)}
    steps = []  # (min_slot, max_slot, a_slot, b_slot)
    next_slot = 25
    for i, j in _batcher(n_wires):
        a, b = wire[i], wire[j]
        if b is None:
            continue  # min(a, inf) = a stays on i
        if a is None:
            wire[i], wire[j] = b, None  # the finite value moves to i, inf to j
            continue
        va, vb = values[a], values[b]
        if not np.any(va > vb):
            continue  # never exchanges on column-sorted inputs
        lo, hi = next_slot, next_slot + 1
        next_slot += 2
        values[lo], values[hi] = np.minimum(va, vb), np.maximum(va, vb)
        steps.append((lo, hi, a, b))
        wire[i], wire[j] = lo, hi
    out = wire[12]
    # Backward pass: keep only what the median slot depends on.
    needed = {out}
    program = []
    for lo, hi, a, b in reversed(steps):
        if lo in needed:
            program.append(("min", lo, a, b))
            needed.update((a, b))
        if hi in needed:
            program.append(("max", hi, a, b))
            needed.update((a, b))
    program.reverse()
    # Exhaustive check on the column-sorted 0-1 inputs (exact by the 0-1 principle).
    check = {s: inputs[:, s] for s in range(25)}
    for op, dst, a, b in program:
        check[dst] = (np.minimum if op == "min" else np.maximum)(check[a], check[b])
    expected = np.sort(inputs, axis=1)[:, 12]
    assert np.array_equal(check[out], expected), "median network is wrong"
    return tuple(program), out


MEDIAN25_PROGRAM, MEDIAN25_OUTPUT = _build_network()


def median5x5(x):
    """5x5 median of every `[..., H, W]` plane with a replicated border (`cv::medianBlur`).

    Args:
        x: float tensor `[B, H, W]`.

    Returns:
        The filtered tensor, same shape and dtype; identical (bit for bit) to
        `cv2.medianBlur(plane, 5)` for float32 planes.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.flow.median import median5x5
    >>> x = np.zeros((1, 8, 8), "float32"); x[0, 3, 3] = 9.0
    >>> float(np.asarray(median5x5(x)).max())
    0.0
    """
    from keras import ops

    height, width = x.shape[-2], x.shape[-1]
    padded = pad_edge(x, 2)  # [B, H+4, W+4]
    rows = [padded[:, r : r + height, :] for r in range(5)]  # vertical taps of each column
    for a, b in _COLUMN_SORT_5:
        rows[a], rows[b] = ops.minimum(rows[a], rows[b]), ops.maximum(rows[a], rows[b])
    # Slot c*5 + r: rank r of the column at horizontal offset c.
    slots = {c * 5 + r: rows[r][:, :, c : c + width] for c in range(5) for r in range(5)}
    for op, dst, a, b in MEDIAN25_PROGRAM:
        slots[dst] = (ops.minimum if op == "min" else ops.maximum)(slots[a], slots[b])
    return slots[MEDIAN25_OUTPUT]
