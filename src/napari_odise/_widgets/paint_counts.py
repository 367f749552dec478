"""Pixel-count changes of one napari paint event, read from the event's undo atoms.

napari's ``Labels.events.paint`` carries the undo history item of the edit: a list of atoms, each
holding the values the edit overwrote and the value(s) it wrote (a brush stroke, fill or polygon
gives ``_MaskedPaintAtom(slice_key, mask, old_values, new_value)``; ``data_setitem`` gives
``(indices, old_values, new_values)``). Counting those values costs time proportional to the
painted area, where recounting the layer costs its whole size (4096x4096 per mouse move).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def _counts(values) -> Counter:
    values = np.asarray(values).ravel()
    if values.size == 0:
        return Counter()
    if np.issubdtype(values.dtype, np.integer) and values.min() >= 0 and values.max() <= 4 * values.size + 1024:
        counts = np.bincount(values)  # linear time for a large write (np.unique sorts or hashes)
        ids = np.flatnonzero(counts)
        return Counter(dict(zip(ids.tolist(), counts[ids].tolist())))
    ids, counts = np.unique(values, return_counts=True)
    return Counter(dict(zip(ids.tolist(), counts.tolist())))


def _repeats(index) -> bool:
    """Whether a pixel occurs twice in an index, in time linear in its size for the dense
    indices a whole-plane write gives (the pixels' flat positions counted, not column-sorted)."""
    coords = [np.asarray(i).ravel() for i in index]
    if not coords or coords[0].size < 2:
        return False
    if min(int(c.min()) for c in coords) < 0:  # negative (from-the-end) indices: compare as given
        stacked = np.stack(coords)
        return np.unique(stacked, axis=1).shape[1] != stacked.shape[1]
    lowest = [int(c.min()) for c in coords]  # positions within the index's bounding box
    coords = [c - low for c, low in zip(coords, lowest)]
    dims = tuple(int(c.max()) + 1 for c in coords)
    flat = np.ravel_multi_index(coords, dims)  # ValueError when too large: the caller recounts
    if np.prod(dims, dtype=np.float64) <= 4 * flat.size + 1024:
        return int(np.bincount(flat).max()) > 1
    flat = np.sort(flat)
    return bool((flat[1:] == flat[:-1]).any())


def count_changes(atoms) -> dict[int, int] | None:
    """{label: change of its pixel count} for an event's atoms (0 is unlabeled), or None when an
    atom has a form this does not know (then the caller recounts the layer)."""
    change: Counter = Counter()
    try:
        for atom in atoms:
            if hasattr(atom, "old_values") and hasattr(atom, "new_value"):  # a masked paint atom
                old = np.asarray(atom.old_values)
                written = Counter({int(atom.new_value): int(old.size)})
            else:
                index, old, new = atom
                if _repeats(index):
                    return None  # a pixel written twice: which value stayed is in the data only
                old = np.asarray(old)
                new = np.asarray(new)
                written = _counts(new) if new.ndim else Counter({int(new): int(old.size)})
            change.update(written)
            change.subtract(_counts(old))
    except (TypeError, ValueError):
        return None
    return {label: delta for label, delta in change.items() if delta}


def written(data, atoms) -> bool | None:
    """Whether the atoms' values are in ``data`` already (napari emits the paint event of a
    grouped stroke after writing, of a single paint call before); None when it cannot tell."""
    try:
        for atom in atoms:
            if hasattr(atom, "slice_key") and hasattr(atom, "new_value"):
                region = np.asarray(data[atom.slice_key])
                region = region if atom.mask is None else region[atom.mask]
                if region.size and not np.all(region == atom.new_value):
                    return False
            else:
                index, _, new = atom
                if not np.array_equal(np.asarray(data[index]), np.broadcast_to(new, np.shape(index[0]))):
                    return False
    except (TypeError, ValueError, IndexError):
        return None
    return True
