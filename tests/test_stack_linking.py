"""Linking segments through a stack (napari_odise.stack_linking) on hand-made moving-disc stacks:
ids kept through the stack, no link below the IoU threshold, never across categories, the
Hungarian pairing, and the relabelled results and link record."""

import numpy as np
import pytest

from napari_odise.errors import InvalidInputError
from napari_odise.result import PanopticResult
from napari_odise.stack_linking import DEFAULT_THRESHOLD, link_stack, link_tracks, match_planes, overlaps
from napari_odise.vocabulary import Vocabulary

VOCABULARY = Vocabulary.parse("cell\nbead\nbackground (stuff)")
CELL, BEAD, BACKGROUND = (c.id for c in VOCABULARY)
SIZE = 96


def disc(centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def plane(discs, stuff: bool = False, seed: int = 0) -> PanopticResult:
    """One plane: ``discs`` is [(centre, radius, category)], painted in order, given ids in a
    shuffled order (a model numbers segments as it likes); optionally stuff everywhere else."""
    label_map = np.zeros((SIZE, SIZE), np.int32)
    ids = np.random.default_rng(seed).permutation(len(discs)) + 1
    info = []
    for segment_id, (centre, radius, category) in zip(ids.tolist(), discs):
        label_map[disc(centre, radius)] = segment_id
        info.append({"id": segment_id, "category_id": category, "score": 0.5 + segment_id / 100,
                     "query_ids": [10 + segment_id]})
    if stuff:
        label_map[label_map == 0] = len(discs) + 1
        info.append({"id": len(discs) + 1, "category_id": BACKGROUND, "score": 0.9})
    result = PanopticResult.from_segments_info(label_map, info, VOCABULARY)
    result.validate()
    return result


def track_of(linked, key, centre) -> int:
    """The id the relabelled plane ``key`` has at pixel ``centre``."""
    return int(linked.results[key].label_map[centre])


def moving_discs(planes: int = 8):
    """Two cells drifting right and down 3 px per plane, a bead standing still, stuff around."""
    stack = {}
    for k in range(planes):
        discs = [((20 + 3 * k, 15 + 3 * k), 10, CELL), ((70, 70 - 3 * k), 9, CELL), ((20, 75), 6, BEAD)]
        stack[(k,)] = plane(discs, stuff=True, seed=k)
    return stack


def test_moving_discs_keep_one_id_through_the_stack():
    stack = moving_discs()
    linked = link_stack(stack)
    assert linked.threshold == DEFAULT_THRESHOLD and linked.axis == 0
    first = {name: track_of(linked, (0,), centre) for name, centre in
             {"a": (20, 15), "b": (70, 70), "bead": (20, 75), "stuff": (0, 0)}.items()}
    assert sorted(first.values()) == [1, 2, 3, 4]  # tracks numbered 1.. from the first plane
    for k in range(8):
        assert track_of(linked, (k,), (20 + 3 * k, 15 + 3 * k)) == first["a"]
        assert track_of(linked, (k,), (70, 70 - 3 * k)) == first["b"]
        assert track_of(linked, (k,), (20, 75)) == first["bead"]
        assert track_of(linked, (k,), (0, 0)) == first["stuff"]
        result = linked.results[(k,)]
        assert sorted(result.segments["id"].tolist()) == [1, 2, 3, 4]
        # the link record: plane-local id (as given) -> track id, agreeing with the pixels
        given = stack[(k,)].label_map
        for local, track in linked.tracks[(k,)].items():
            assert np.array_equal(given == local, result.label_map == track)
            assert result.query_ids[track] == stack[(k,)].query_ids[local]  # tensors follow
        assert result.info["track_ids"] == {1: 1, 2: 2, 3: 3, 4: 4}
        assert result.info["stack_links"] == {"threshold": DEFAULT_THRESHOLD, "axis": 0}
    assert linked.linked() == 4


def test_relabelled_rows_keep_category_score_and_area():
    stack = moving_discs(3)
    linked = link_stack(stack)
    for key, given in stack.items():
        table = linked.results[key].segments.set_index("id")
        for row in given.segments.itertuples(index=False):
            moved = table.loc[linked.tracks[key][row.id]]
            assert (moved.category_id, moved.score, moved.area, moved.source) == (
                row.category_id, row.score, row.area, row.source)


def test_a_disc_that_jumps_below_the_threshold_starts_a_new_track():
    # plane 1's disc overlaps plane 0's with IoU about 0.2 (radius 10, moved 14 px): no link
    stack = {(0,): plane([((40, 30), 10, CELL)]), (1,): plane([((40, 44), 10, CELL)])}
    a_ids, b_ids, iou = overlaps(stack[(0,)].label_map, stack[(1,)].label_map)
    assert 0 < iou[0, 0] < DEFAULT_THRESHOLD
    linked = link_stack(stack)
    assert track_of(linked, (0,), (40, 30)) == 1 and track_of(linked, (1,), (40, 44)) == 2
    assert linked.linked() == 0
    # the same overlap links when the threshold allows it
    assert track_of(link_stack(stack, threshold=0.1), (1,), (40, 44)) == 1


def test_crossing_discs_keep_their_own_ids():
    # two cells cross paths (the lower one painted over the upper where they meet): around the
    # crossing each overlaps where the other was one plane before, with an IoU below the
    # threshold, so each keeps its own track instead of swapping
    planes = 12
    stack = {
        (k,): plane([((40, 20 + 5 * k), 10, CELL), ((52, 76 - 5 * k), 10, CELL)], seed=k)
        for k in range(planes)
    }
    linked = link_stack(stack)
    a, b = track_of(linked, (0,), (40, 20)), track_of(linked, (0,), (52, 76))
    crossed = []
    for k in range(planes):
        assert track_of(linked, (k,), (38, 20 + 5 * k)) == a
        assert track_of(linked, (k,), (54, 76 - 5 * k)) == b
        if k:
            _, _, iou = overlaps(linked.results[(k - 1,)].label_map, linked.results[(k,)].label_map)
            crossed.append(iou[a - 1, b - 1])
            assert iou[a - 1, a - 1] >= DEFAULT_THRESHOLD and iou[b - 1, b - 1] >= DEFAULT_THRESHOLD
    assert 0 < max(crossed) < DEFAULT_THRESHOLD
    assert linked.linked() == 2


def test_discs_that_cross_with_little_overlap_are_not_linked():
    # plane 0: a cell on the left; plane 1: that cell gone, another one on its way across,
    # overlapping where the first was with IoU below the threshold: a new track
    stack = {(0,): plane([((48, 30), 12, CELL)]), (1,): plane([((40, 48), 12, CELL)])}
    iou = overlaps(stack[(0,)].label_map, stack[(1,)].label_map)[2]
    assert 0 < iou[0, 0] < DEFAULT_THRESHOLD
    assert match_planes(*((r.label_map, {1: CELL}) for r in stack.values())) == {}
    assert link_stack(stack).linked() == 0


def test_categories_never_link_across():
    # the same disc, a cell in plane 0 and a bead in plane 1: IoU 1.0 but no link
    stack = {(0,): plane([((40, 40), 10, CELL)]), (1,): plane([((40, 40), 10, BEAD)])}
    linked = link_stack(stack)
    assert track_of(linked, (0,), (40, 40)) == 1 and track_of(linked, (1,), (40, 40)) == 2
    assert link_stack(stack, threshold=0.0).linked() == 0


def test_unassigned_segments_never_link():
    label_map = np.zeros((SIZE, SIZE), np.int32)
    label_map[disc((40, 40), 10)] = 1
    result = PanopticResult.from_segments_info(label_map, [{"id": 1, "category_id": -1}], VOCABULARY)
    assert link_stack({(0,): result, (1,): result.copy()}).linked() == 0


def test_hungarian_pairing_beats_greedy():
    # plane 0: cells A (cols 0-15) and B (16-21); plane 1: Q (cols 0-5) and P (6-21).
    # IoU A-P 10/22, A-Q 6/16, B-P 6/16, B-Q 0. Taking the best pair first (A-P) would leave B
    # unlinked; the pairing maximising the summed IoU links A-Q and B-P (0.75 > 0.45).
    earlier = np.zeros((10, 30), np.int32)
    earlier[:, 0:16], earlier[:, 16:22] = 1, 2
    later = np.zeros((10, 30), np.int32)
    later[:, 6:22], later[:, 0:6] = 1, 2
    _, _, iou = overlaps(earlier, later)
    np.testing.assert_allclose(iou, [[10 / 22, 6 / 16], [6 / 16, 0]])
    categories = {1: CELL, 2: CELL}
    assert match_planes((earlier, categories), (later, categories)) == {2: 1, 1: 2}
    # above the pairs' IoU, nothing links
    assert match_planes((earlier, categories), (later, categories), threshold=0.46) == {}


def test_four_d_stacks_link_along_the_chosen_axis_and_a_missing_plane_breaks_links():
    one = plane([((40, 40), 10, CELL)])
    stack = {(t, z): one.copy() for t in range(2) for z in range(3)}
    along_z = link_tracks({k: (r.label_map, {1: CELL}) for k, r in stack.items()}, axis=1)
    assert sorted(len(track) for track in along_z) == [3, 3]
    along_t = link_tracks({k: (r.label_map, {1: CELL}) for k, r in stack.items()}, axis=0)
    assert sorted(len(track) for track in along_t) == [2, 2, 2]
    gap = {(0,): one, (2,): one.copy()}  # plane 1 not segmented
    assert link_stack(gap).linked() == 0


def test_bad_arguments_are_refused():
    stack = moving_discs(2)
    with pytest.raises(InvalidInputError, match="threshold"):
        link_stack(stack, threshold=1.5)
    with pytest.raises(InvalidInputError, match="axis"):
        link_stack(stack, axis=1)
    small = plane([((5, 5), 3, CELL)])
    small = PanopticResult(small.label_map[:50], small.segments.assign(area=int((small.label_map[:50] == 1).sum())), VOCABULARY)
    with pytest.raises(InvalidInputError, match="one shape"):
        link_stack({(0,): stack[(0,)], (1,): small})


# --- in a Labels layer, in export, and in the Segment widget -------------------------------------
def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label arrays differ only by a one-to-one renaming of ids (0 kept)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def assert_track_scores(state, linked):
    """Each layer id's score is the mean of its planes' scores in the core's linked results."""
    data = np.asarray(state.layer.data)
    core_map = np.stack([linked.results[key].label_map for key in sorted(linked.results)])
    tables = [linked.results[key].segments.set_index("id") for key in sorted(linked.results)]
    for layer_id, row in state.table.set_index("id").iterrows():
        core = int(core_map[data == layer_id][0])
        assert row.score == pytest.approx(np.mean([t.loc[core, "score"] for t in tables if core in t.index]))


def labels_state(stack):
    """A Labels layer holding a stack of results as the Segment widget makes it (unlinked)."""
    from napari.layers import Labels

    from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels

    shape = (len(stack), SIZE, SIZE)
    data, rows, claimed = initial_labels(shape, stack)
    return SegmentationLayer(Labels(data), VOCABULARY, rows, claimed=claimed, model_results=stack)


def test_linking_a_layer_gives_each_track_one_fresh_id_and_undo_restores_the_planes():
    from napari_odise._widgets.linked_planes import link_layer_planes, spanning_ids

    stack = moving_discs(5)
    state = labels_state(stack)
    layer = state.layer
    before, table_before = np.array(layer.data), state.table.copy()
    assert spanning_ids(state) == 0
    assert link_layer_planes(state) == 4 and spanning_ids(state) == 4
    linked = link_stack(stack)
    expected = np.stack([linked.results[(k,)].label_map for k in range(5)])
    assert same_partition(np.asarray(layer.data), expected)
    table = state.table.set_index("id")
    assert len(table) == 4 and int(before.max()) < min(table.index)  # fresh ids, never used before
    for track_id, row in table.iterrows():
        mask = np.asarray(layer.data) == track_id
        assert row.area == mask.sum() and row.source == "model" and mask.any(axis=(1, 2)).all()
        core = int(expected[mask][0])  # the core's track at the same pixels
        tables = [linked.results[(k,)].segments.set_index("id") for k in range(5)]
        assert row.category == tables[0].loc[core, "category"]
        assert row.score == pytest.approx(np.mean([t.loc[core, "score"] for t in tables]))
    assert layer.metadata["odise"]["info"]["stack_links"] == {"threshold": DEFAULT_THRESHOLD, "axis": 0}
    colours = layer.colormap.color_dict
    assert all(track in colours for track in table.index)  # one colour per track, all planes
    layer.undo()  # linking is one undo step: the planes' own ids and rows come back
    state.sync()
    np.testing.assert_array_equal(layer.data, before)
    assert state.table.equals(table_before)
    # linking again after linking changes nothing (already one id per track)
    link_layer_planes(state)
    relinked = np.array(layer.data)
    assert link_layer_planes(state) == 4
    np.testing.assert_array_equal(layer.data, relinked)


def test_a_linked_stack_exports_per_plane_with_track_ids_and_reads_them_back(tmp_path):
    from napari_odise._widgets.linked_planes import link_layer_planes
    from napari_odise.io.coco_panoptic import read_panoptic
    from napari_odise.io.export import export_results
    from napari_odise.io.layers import results_from_labels
    from napari_odise.io.layout import DatasetLayout

    state = labels_state(moving_discs(3))
    link_layer_planes(state)
    state.sync()
    results = results_from_labels(state.layer.data, state.layer.features, state.layer.metadata)
    assert sorted(results) == [(0,), (1,), (2,)]
    export_results(list(results.values()), tmp_path, image_names=[f"discs-{k}" for k in range(3)])
    read = {r.source.name: r for r in read_panoptic(DatasetLayout(tmp_path).panoptic_json)}
    assert sorted(read) == ["discs-0", "discs-1", "discs-2"]
    tracks = [read[f"discs-{k}"].info["track_ids"] for k in range(3)]
    assert tracks[0] == tracks[1] == tracks[2] and len(tracks[0]) == 4
    for k in range(3):  # the track id marks the same object in every plane
        plane = read[f"discs-{k}"].label_map
        assert tracks[k][int(plane[20 + 3 * k, 15 + 3 * k])] == tracks[0][int(read["discs-0"].label_map[20, 15])]
    # an unlinked stack records no tracks
    unlinked = labels_state(moving_discs(2))
    unlinked.sync()
    plain = results_from_labels(unlinked.layer.data, unlinked.layer.features, unlinked.layer.metadata)
    assert all("track_ids" not in r.info for r in plain.values())


@pytest.fixture(scope="module")
def tiny_predictor():
    from conftest import fast_tiny

    from napari_odise import Predictor
    from napari_odise._widgets.gl_compat import guard_triton

    guard_triton()
    return Predictor(fast_tiny(), device="cpu")


def test_segment_widget_links_a_stack_opened_from_the_plugins_menu(make_napari_viewer, tiny_predictor, qtbot):
    import skimage.data

    from napari_odise._widgets.linked_planes import spanning_ids
    from napari_odise._widgets.segment_widget import ALL_PLANES
    from napari_odise._widgets.session import Session
    from napari_odise.models import ModelSpec

    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    Session.of(viewer).pool.put(ModelSpec("tiny", "cpu"), tiny_predictor)
    widget.model_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.settings_combo.setCurrentText("demo")
    camera, moon = skimage.data.camera()[::4, ::4], skimage.data.moon()[::4, ::4]
    stack = np.stack([camera, camera, moon])  # two planes alike, then another scene
    viewer.add_image(stack, name="planes")
    widget.planes_combo.setCurrentText(ALL_PLANES)
    assert widget.link_box.isEnabled() and widget.link_box.isChecked()  # on by default for stacks
    assert widget.link_threshold.value() == DEFAULT_THRESHOLD
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)

    layer = viewer.layers["planes panoptic"]
    data = np.asarray(layer.data)
    # the model's own per-plane results (kept with the layer), linked by the core, name the
    # same objects as the layer does
    state = Session.of(viewer).state(layer)
    results = dict(state.model_results)
    assert sorted(results) == [(0,), (1,), (2,)]
    linked = link_stack(results)
    assert same_partition(data, np.stack([linked.results[(k,)].label_map for k in range(3)]))
    # alike planes: every object keeps its id (and so its colour) through planes 0-1
    assert np.unique(data[0]).size > 2
    np.testing.assert_array_equal(data[0], data[1])
    assert spanning_ids(state) == linked.linked() >= np.unique(data[0]).size - 1
    colours = layer.colormap.color_dict
    assert all(int(i) in colours for i in np.unique(data[0]) if i)
    table = state.table.set_index("id")
    assert (table["source"] == "model").all()
    assert_track_scores(state, linked)
    assert layer.metadata["odise"]["info"]["stack_links"]["threshold"] == DEFAULT_THRESHOLD

    # a vocabulary change re-labels the stack and links it again
    widget.vocabulary_widget.preset_boxes["ade20k"].setChecked(True)
    vocabulary = Session.of(viewer).vocabulary.vocabulary
    qtbot.waitUntil(lambda: not widget.busy and state.vocabulary == vocabulary, timeout=60_000)
    relabelled = link_stack({k: tiny_predictor.reclassify(r, vocabulary) for k, r in results.items()})
    data = np.asarray(layer.data)
    assert same_partition(data, np.stack([relabelled.results[(k,)].label_map for k in range(3)]))
    np.testing.assert_array_equal(data[0], data[1])
    assert (state.table["source"] == "model").all()
    assert_track_scores(state, relabelled)  # kept ids: the mean of the new planes' scores

    # with the option off a new run leaves the planes' ids apart
    widget.link_box.setChecked(False)
    assert not widget.link_threshold.isEnabled()
    viewer.layers.remove(layer)
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy and "planes panoptic" in viewer.layers, timeout=120_000)
    data = np.asarray(viewer.layers["planes panoptic"].data)
    assert not set(np.unique(data[0]).tolist()) - {0} & set(np.unique(data[1]).tolist())
    assert "stack_links" not in viewer.layers["planes panoptic"].metadata["odise"]["info"]


def test_a_bad_track_id_in_a_file_is_refused():
    from napari_odise.io.coco_panoptic import result_from_segments_info
    from napari_odise.io.errors import DatasetError

    label_map = np.zeros((8, 8), np.int32)
    label_map[2:5, 2:5] = 3
    entry = {"id": 3, "category_id": CELL, "track_id": 12}
    read = result_from_segments_info(label_map, [entry], VOCABULARY, {})
    assert read.info["track_ids"] == {3: 12}
    for bad in ("12", 0, True, 1.5):
        with pytest.raises(DatasetError, match="track_id"):
            result_from_segments_info(label_map, [{**entry, "track_id": bad}], VOCABULARY, {})
    assert "track_ids" not in result_from_segments_info(label_map, [{"id": 3, "category_id": CELL}], VOCABULARY, {}).info


def test_new_results_on_a_linked_layer_keep_the_track_ids_where_the_pixels_stay():
    from napari_odise._widgets.linked_planes import link_layer_planes

    stack = moving_discs(3)
    state = labels_state(stack)
    link_layer_planes(state)
    linked = np.array(state.layer.data)
    # new scores, same pixels: every track keeps its id, its score the mean of the new ones
    rescored = {k: r.copy() for k, r in stack.items()}
    for r in rescored.values():
        r.segments["score"] = r.segments["score"] - 0.25
    state.apply_results(rescored, VOCABULARY)
    np.testing.assert_array_equal(state.layer.data, linked)
    assert_track_scores(state, link_stack(rescored))
    assert (state.table["source"] == "model").all()
    # plane 2's moving cell now found a little bigger: it gets a new id there (then links again
    # through the widget's session); in planes 0-1 the track keeps its id, still the model's
    moved = dict(rescored)
    bigger = np.array(stack[(2,)].label_map)
    cell = int(bigger[26, 21])
    bigger[disc((26, 21), 12) & (bigger != 0) & (bigger == bigger[0, 0])] = cell
    moved[(2,)] = PanopticResult(bigger, stack[(2,)].segments.assign(
        area=np.bincount(bigger.ravel(), minlength=6)[stack[(2,)].segments["id"]]), VOCABULARY)
    state.apply_results({(2,): moved[(2,)]}, VOCABULARY)
    track = int(linked[0, 20, 15])
    data = np.asarray(state.layer.data)
    assert (data[0] == track).any() and (data[1] == track).any() and not (data[2] == track).any()
    row = state.table.set_index("id").loc[track]
    assert row.source == "model" and row.area == (data == track).sum()
    link_layer_planes(state)  # linking again joins plane 2's new segment to the track
    data = np.asarray(state.layer.data)
    assert data[0, 20, 15] == data[1, 23, 18] == data[2, 26, 21] and (state.table["source"] == "model").all()
