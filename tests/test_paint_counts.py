"""Paint-time table updates count only what a paint event changed (issue 16 item 7): the same
table as a full recount after brush strokes, fills, polygons, data_setitem and eraser, on 2-D
layers and stacks, without recounting the layer."""

import numpy as np
import pandas as pd
import pytest
from napari.components import ViewerModel

from napari_odise._widgets import layer_state
from napari_odise._widgets.layer_state import SegmentationLayer
from napari_odise._widgets.paint_counts import count_changes
from napari_odise.io.layers import count_ids, layer_table

from hand_made import VOCABULARY as VOCAB


def full_recount(state) -> pd.DataFrame:
    ids, areas, _ = count_ids(state.layer.data)
    return layer_table(ids, areas, state.rows, state.vocabulary)


@pytest.fixture
def recounts(monkeypatch):
    """How many times the whole layer is counted."""
    calls = []
    original = layer_state.count_ids

    def counting(data):
        calls.append(np.shape(data))
        return original(data)

    monkeypatch.setattr(layer_state, "count_ids", counting)
    return calls


@pytest.mark.parametrize("shape", [(48, 64), (3, 32, 40)])
def test_painting_updates_the_table_as_a_full_recount_would_without_recounting(shape, recounts):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 5, size=shape).astype(np.int32)
    data = np.kron(data, np.ones((1,) * (len(shape) - 2) + (4, 4), np.int32))[
        tuple(slice(0, s) for s in shape)
    ]
    layer = ViewerModel().add_labels(data, name="painted")
    state = SegmentationLayer(layer, VOCAB)
    recounts.clear()
    for step in range(80):
        kind = rng.integers(0, 5)
        point = tuple(int(rng.integers(0, s)) for s in shape)
        label = int(rng.integers(0, 9))
        if kind == 0:  # a stroke: several dabs, one paint event at its end
            layer.brush_size = int(rng.integers(1, 12))
            with layer.block_history():
                for _ in range(4):
                    layer.paint(tuple(int(rng.integers(0, s)) for s in shape), label)
        elif kind == 1:
            layer.paint(point, label)
        elif kind == 2:
            layer.fill(point, max(label, 1))
        elif kind == 3:  # distinct pixels (a pixel written twice is recounted: see the last test)
            flat = rng.choice(int(np.prod(shape)), size=30, replace=False)
            layer.data_setitem(np.unravel_index(flat, shape), rng.integers(0, 9, size=30))
        else:
            lead, (h, w) = point[:-2], shape[-2:]
            corners = [(int(rng.integers(0, h)), int(rng.integers(0, w))) for _ in range(3)]
            layer.paint_polygon([(*lead, y, x) for y, x in corners], label)
        pd.testing.assert_frame_equal(state.table, full_recount(state))
        features = layer.features
        assert features["area"].iloc[0] == int((np.asarray(layer.data) == 0).sum())
    assert recounts == []  # every paint event was counted from its own values


def test_undo_still_recounts_and_agrees(recounts):
    layer = ViewerModel().add_labels(np.zeros((20, 20), np.int32))
    state = SegmentationLayer(layer, VOCAB)
    layer.brush_size = 5
    before = len(recounts)
    layer.paint((10, 10), 3)
    assert len(recounts) == before and state.table["area"].tolist() == [int((layer.data == 3).sum())]
    layer.undo()  # no paint event: the refresh recounts
    assert state.table.empty and len(recounts) > before


def test_count_changes_reads_both_atom_forms_and_refuses_others():
    tuple_atom = ((np.array([0, 1, 2]), np.array([0, 0, 0])), np.array([0, 5, 5]), 7)
    assert count_changes([tuple_atom]) == {0: -1, 5: -2, 7: 3}
    array_atom = ((np.array([0, 1]), np.array([0, 0])), np.array([1, 2]), np.array([2, 3]))
    assert count_changes([array_atom]) == {1: -1, 3: 1}
    assert count_changes(["not an atom"]) is None
    twice = ((np.array([0, 0]), np.array([1, 1])), np.array([4, 4]), np.array([2, 3]))
    assert count_changes([twice]) is None
