"""Panoptic quality of the model's output against corrected labels, on hand-made cases whose
numbers are worked out in the comments (napari_odise.quality)."""

import numpy as np
import pytest

from napari_odise.errors import InvalidInputError
from napari_odise.quality import ModelOutput, Quality, compare, compare_results, format_table, total
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

VOCABULARY = Vocabulary.parse("cat\ndog\ngrass (stuff)")
CAT, DOG, GRASS = (c.id for c in VOCABULARY)
THINGS = {c.id: c.isthing for c in VOCABULARY}


def columns(spans) -> np.ndarray:
    """A 10x10 map whose column ranges (start, stop) hold ids 1, 2, ... in order."""
    label_map = np.zeros((10, 10), np.int32)
    for segment_id, (start, stop) in enumerate(spans, start=1):
        label_map[:, start:stop] = segment_id
    return label_map


def output(label_map, categories) -> ModelOutput:
    return ModelOutput(label_map, categories, {c: THINGS[c] for c in categories.values()})


def test_identical_labels_give_one_everywhere():
    model = columns([(0, 5), (5, 8), (8, 10)])
    categories = {1: CAT, 2: DOG, 3: GRASS}
    quality = compare(model.copy(), categories, output(model, categories), THINGS)
    for group, n in (("all", 3), ("things", 2), ("stuff", 1)):
        scores = quality.scores(group)
        assert (scores.pq, scores.sq, scores.rq, scores.n) == (1.0, 1.0, 1.0, n)
    assert all(c.pixel_iou == 1.0 for c in quality.categories.values())
    assert quality.unchanged and quality.ignored == 0


def test_ids_do_not_matter_only_pixels_and_categories():
    model = columns([(0, 5), (5, 10)])
    renumbered = np.where(model == 1, 70, np.where(model == 2, 9, 0))
    quality = compare(renumbered, {70: CAT, 9: GRASS}, output(model, {1: CAT, 2: GRASS}), THINGS)
    assert quality.scores("all").pq == 1.0 and quality.unchanged


def test_one_merged_pair():
    # The model split one cat in two: A = columns 0-4 (50 px), B = columns 5-7 (30 px); grass
    # columns 8-9 (20 px). The person merged A and B into one cat of 80 px.
    # cat: IoU(A) = 50 / (50 + 80 - 50) = 0.625 > 0.5: TP; IoU(B) = 30 / 80 = 0.375: FP.
    #   PQ = 0.625 / (1 + 0.5) = 0.41667, SQ = 0.625, RQ = 1 / 1.5 = 0.66667.
    # grass: untouched, PQ = SQ = RQ = 1.
    # all = means of the two: PQ 0.70833, SQ 0.8125, RQ 0.83333; things = cat; stuff = grass.
    model = columns([(0, 5), (5, 8), (8, 10)])
    corrected = columns([(0, 8), (8, 10)])
    quality = compare(corrected, {1: CAT, 2: GRASS}, output(model, {1: CAT, 2: CAT, 3: GRASS}), THINGS)
    cat = quality.categories[CAT]
    assert (cat.tp, cat.fp, cat.fn, cat.ignored) == (1, 1, 0, 0)
    assert cat.iou == pytest.approx(0.625)
    everything = quality.scores("all")
    assert everything.pq == pytest.approx(0.708333, abs=1e-6)
    assert everything.sq == pytest.approx(0.8125)
    assert everything.rq == pytest.approx(0.833333, abs=1e-6)
    assert quality.scores("things").pq == pytest.approx(0.416667, abs=1e-6)
    assert quality.scores("stuff").pq == 1.0
    # semantically nothing changed: the cat pixels are the same 80
    assert cat.pixel_iou == 1.0 and not quality.unchanged


def test_a_merge_of_two_halves_matches_neither():
    # 40 + 40 px merged into 80: IoU = 40 / 80 = 0.5 exactly, not above 0.5: no match.
    # cat: TP 0, FP 2, FN 1 -> PQ = SQ = RQ = 0.
    model = columns([(0, 4), (4, 8)])
    corrected = columns([(0, 8)])
    quality = compare(corrected, {1: CAT}, output(model, {1: CAT, 2: CAT}), THINGS)
    cat = quality.categories[CAT]
    assert (cat.tp, cat.fp, cat.fn) == (0, 2, 1)
    assert quality.scores("all").pq == 0.0


def test_a_deleted_segment_is_ignored_not_a_false_positive():
    # The model's dog (columns 5-7) was deleted: its 30 px are unlabeled (void) in the correction.
    # 30 / 30 > 0.5 of it lies on void: ignored (panopticapi), so PQ stays 1 over cat and grass.
    model = columns([(0, 5), (5, 8), (8, 10)])
    corrected = np.where(model == 2, 0, model)
    quality = compare(corrected, {1: CAT, 3: GRASS}, output(model, {1: CAT, 2: DOG, 3: GRASS}), THINGS)
    assert quality.scores("all").pq == 1.0 and quality.scores("all").n == 2
    assert quality.ignored == 1 and quality.categories[DOG].ignored == 1
    assert quality.categories[DOG].pixel_iou is None  # no dog pixels left on either side that count
    assert not quality.unchanged


def test_a_deleted_segment_painted_over_counts():
    # The dog (columns 5-7) deleted and its pixels painted grass: grass is now columns 5-9 (50 px).
    # dog: FP (nothing of it on void). grass: IoU = 20 / 50 = 0.4: FP 1 and FN 1. cat: TP, IoU 1.
    # all = (1 + 0 + 0) / 3 = 0.33333; things = (1 + 0) / 2 = 0.5; stuff = 0.
    # Per-category IoU: grass 20 / 50 = 0.4, dog 0 / 30 = 0.
    model = columns([(0, 5), (5, 8), (8, 10)])
    corrected = columns([(0, 5), (5, 10)])
    quality = compare(corrected, {1: CAT, 2: GRASS}, output(model, {1: CAT, 2: DOG, 3: GRASS}), THINGS)
    assert quality.scores("all").pq == pytest.approx(1 / 3)
    assert quality.scores("things").pq == 0.5
    assert quality.scores("stuff").pq == 0.0
    assert quality.categories[GRASS].pixel_iou == pytest.approx(0.4)
    assert quality.categories[DOG].pixel_iou == 0.0


def test_things_and_stuff_are_averaged_apart():
    # Rows 0-4: the model's cat is columns 0-4 (25 px), the person moved its edge to columns 0-3
    # (20 px) and gave column 4 to grass. Rows 5-9: a dog in columns 0-4 (25 px), untouched.
    # Grass: model columns 5-9 of all rows (50 px), corrected 55 px.
    # cat IoU 20/25 = 0.8; dog 1; grass 50/55 = 0.90909.
    # things = (0.8 + 1) / 2 = 0.9; stuff = 0.90909; all = (0.8 + 1 + 0.90909) / 3 = 0.90303.
    model = np.zeros((10, 10), np.int32)
    model[:5, :5], model[5:, :5], model[:, 5:] = 1, 2, 3
    corrected = model.copy()
    corrected[:5, 4] = 3
    categories = {1: CAT, 2: DOG, 3: GRASS}
    quality = compare(corrected, categories, output(model, categories), THINGS)
    assert quality.scores("things").pq == pytest.approx(0.9)
    assert quality.scores("stuff").pq == pytest.approx(50 / 55)
    assert quality.scores("all").pq == pytest.approx((0.8 + 1 + 50 / 55) / 3)
    assert quality.scores("things").n == 2 and quality.scores("stuff").n == 1
    assert quality.categories[CAT].pixel_iou == pytest.approx(0.8)


def test_void_in_the_correction_leaves_the_union():
    # The person erased the cat's columns 3-4 (leaving them unlabeled): the model's 20 px there lie
    # on void and leave the union: IoU = 30 / (50 + 30 - 30 - 20) = 1 (panopticapi's rule).
    model = columns([(0, 5)])
    corrected = columns([(0, 3)])
    quality = compare(corrected, {1: CAT}, output(model, {1: CAT}), THINGS)
    assert quality.categories[CAT].tp == 1 and quality.categories[CAT].iou == 1.0


def test_unassigned_segments_are_void():
    # A painted segment nobody gave a category (-1) is void, like unlabeled pixels: the model's
    # cat under it is ignored rather than a false positive.
    model = columns([(0, 5), (5, 10)])
    quality = compare(model, {1: -1, 2: GRASS}, output(model, {1: CAT, 2: GRASS}), THINGS)
    assert quality.categories[CAT].ignored == 1 and quality.categories[CAT].fp == 0
    assert quality.scores("all").pq == 1.0


def test_a_dataset_sums_counts_before_averaging():
    # Image 1 unchanged (cat TP with IoU 1, grass TP), image 2 the merged pair above.
    # cat summed: TP 2, FP 1, IoU 1.625 -> PQ 1.625 / 2.5 = 0.65 (the mean of the images' cat PQs
    # would be (1 + 0.41667) / 2 = 0.70833); grass 1. all = (0.65 + 1) / 2 = 0.825.
    model = columns([(0, 5), (5, 8), (8, 10)])
    same = compare(columns([(0, 5), (8, 10)]), {1: CAT, 2: GRASS}, output(columns([(0, 5), (8, 10)]), {1: CAT, 2: GRASS}), THINGS)
    merged = compare(columns([(0, 8), (8, 10)]), {1: CAT, 2: GRASS}, output(model, {1: CAT, 2: CAT, 3: GRASS}), THINGS)
    summed = total([same, merged])
    assert summed.categories[CAT].pq == pytest.approx(0.65)
    assert summed.scores("all").pq == pytest.approx(0.825)


def test_json_round_trip_keeps_the_counts():
    model = columns([(0, 5), (5, 8), (8, 10)])
    quality = compare(columns([(0, 8), (8, 10)]), {1: CAT, 2: GRASS}, output(model, {1: CAT, 2: CAT, 3: GRASS}), THINGS)
    data = quality.to_json()
    assert data["all"]["pq"] == pytest.approx(0.708333, abs=1e-6) and data["things"]["n"] == 1
    back = Quality.from_json(data)
    assert back.categories == quality.categories and back.isthing == quality.isthing
    with pytest.raises(TypeError):
        Quality.from_json({"categories": {"1": {**data["categories"]["1"], "tp": "two"}}})


def test_model_output_is_a_small_read_only_copy():
    label_map = columns([(0, 5), (5, 10)])
    result = PanopticResult.from_segments_info(
        label_map, [{"id": 1, "category_id": CAT}, {"id": 2, "category_id": GRASS}], VOCABULARY
    )
    kept = ModelOutput.of(result)
    assert kept.label_map.dtype == np.uint8 and not kept.label_map.flags.writeable
    assert kept.isthing == {CAT: True, GRASS: False}
    label_map[:] = 0  # the kept copy does not follow later changes
    assert compare_results(result, kept).unchanged


def test_shapes_must_agree():
    model = columns([(0, 5)])
    with pytest.raises(InvalidInputError):
        compare(model[:5], {1: CAT}, output(model, {1: CAT}), THINGS)


def test_table_text_shows_percent_and_dashes_for_empty_groups():
    model = columns([(0, 5)])
    quality = compare(model, {1: CAT}, output(model, {1: CAT}), THINGS)
    lines = format_table(quality).splitlines()
    assert lines[1].split() == ["all", "100.0", "100.0", "100.0", "1"]
    assert lines[3].split() == ["stuff", "-", "-", "-", "0"]


def test_a_stack_layer_sums_its_planes_against_the_outputs_it_keeps():
    # The layer adapter's count (io.layers.layer_quality) for a 2-plane stack: plane 0 as the model
    # gave it (cat, grass), plane 1 with the model's dog deleted. Layer ids are unique across planes.
    # Summed: cat TP 2, grass TP 2, dog ignored once -> PQ 1 over cat and grass, 1 ignored.
    import pandas as pd

    from napari_odise.io.layers import layer_metadata, layer_quality, model_outputs

    plane = columns([(0, 5), (5, 8), (8, 10)])
    first = np.where(plane == 2, 3, plane)  # plane 0: cat and grass only
    model = {(0,): output(first, {1: CAT, 3: GRASS}), (1,): output(plane, {1: CAT, 2: DOG, 3: GRASS})}
    data = np.stack([first, np.where(plane == 2, 0, plane + 10)]).astype(np.int32)
    features = pd.DataFrame({"index": [1, 3, 11, 13], "category_id": [CAT, GRASS, CAT, GRASS]})
    metadata = layer_metadata(VOCABULARY, model_output=model)
    assert model_outputs(metadata) == model
    quality = layer_quality(data, features, metadata)
    assert (quality.categories[CAT].tp, quality.categories[GRASS].tp, quality.ignored) == (2, 2, 1)
    assert quality.scores("all").pq == 1.0
    assert layer_quality(data, features, layer_metadata(VOCABULARY)) is None  # nothing kept
    assert model_outputs({"odise": {"model_output": {(): "junk", "x": model[(0,)]}}}) == {}
