"""Proposals at a click (napari_odise.proposals) with the tiny model: the listing equals a
brute-force pass over the dense query masks, accepting edits exactly the right pixels and rows,
undo restores both, categories follow the vocabulary, batch-store results work."""

import numpy as np
import pytest
import torch
from conftest import fast_tiny, random_image
from napari.layers import Labels

from napari_odise import PanopticResult, Predictor, proposals
from napari_odise.errors import InvalidInputError
from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
from napari_odise.batch.store import BatchStore, labelset_id
from napari_odise.model.postprocess import upsample_masks
from napari_odise.result import check_consistency
from napari_odise.vocabulary import Vocabulary

from hand_made import CAT, DOG, GRASS
from hand_made import MAP as SMALL
from hand_made import VOCABULARY as SMALL_VOCAB

STREET = Vocabulary.parse("person\ncar\nbicycle\ndog\ntree (stuff)\nroad (stuff)\nsky (stuff)\nbuilding (stuff)")
ANIMALS = Vocabulary.parse("cat\ndog\nhorse\nsky (stuff)\ngrass (stuff)")


@pytest.fixture(scope="module")
def predictor():
    return Predictor(fast_tiny(), device="cpu")


@pytest.fixture(scope="module")
def result(predictor):
    # the demo settings keep every query's pixels, so the map has several segments
    return predictor.predict(random_image(96, 128, seed=0), STREET, settings=predictor.named_settings("demo"))


def brute_force(predictor, result, y, x, vocabulary, include_dropped=False):
    """(query, category name, score) of every query covering (y, x), from the dense masks."""
    encoded = result.encoded
    probs = upsample_masks(encoded.mask_logits, encoded.geometry).sigmoid()
    logprobs = predictor.model.classify(encoded, predictor.embed(vocabulary), result.settings)
    classes = logprobs.float().softmax(-1)
    merge_score, merge_label = classes.max(-1)
    no_object = classes.shape[-1] - 1
    listed = []
    for q in range(encoded.num_queries):
        own = probs[q] >= 0.5
        kept = merge_label[q] != no_object and merge_score[q] > result.settings.object_mask_threshold
        if not own[y, x] or not (kept or include_dropped):
            continue
        quality = float((probs[q] * own).sum() / (own.sum() + 1e-6))
        score, best = classes[q, :no_object].max(-1)
        listed.append((q, vocabulary[int(best)].name, float(score), quality))
    listed.sort(key=lambda t: (-t[2] * t[3], t[0]))
    return [(q, name, score) for q, name, score, _ in listed]


def listing(found):
    return [(p.query, p.category.name, p.score) for p in found]


def assert_same(found, expected):
    assert [(q, n) for q, n, _ in listing(found)] == [(q, n) for q, n, _ in expected]
    np.testing.assert_allclose([s for *_, s in listing(found)], [s for *_, s in expected], rtol=1e-6)


PIXELS = [(0, 0), (10, 100), (48, 64), (95, 127), (60, 5), (30, 77)]


@pytest.mark.parametrize("include_dropped", [False, True])
def test_proposals_equal_a_brute_force_listing_in_the_same_order(predictor, result, include_dropped):
    assert len(result.segments) >= 2
    for y, x in PIXELS:
        found = proposals.proposals_at(predictor, result, y, x, include_dropped=include_dropped)
        assert_same(found, brute_force(predictor, result, y, x, STREET, include_dropped))
        assert all(found[k].rank >= found[k + 1].rank for k in range(len(found) - 1))
    assert found, "the tiny model's masks cover most pixels: the listing must not be empty"


def test_the_mask_index_matches_dense_masks_with_tight_boxes():
    """Hand-made probabilities: discs and a stripe, so boxes are small and bits cross bytes."""
    h, w = 37, 53
    yy, xx = np.mgrid[:h, :w]
    maps = [
        1 / (1 + np.exp(((yy - 10) ** 2 + (xx - 12) ** 2 - 40) / 8.0)),
        1 / (1 + np.exp(((yy - 25) ** 2 + (xx - 40) ** 2 - 90) / 8.0)),
        np.where((xx >= 9) & (xx < 18), 0.7, 0.2),
        np.full((h, w), 0.3),  # covers nothing
    ]
    probs = torch.tensor(np.stack(maps), dtype=torch.float32)
    index = proposals.QueryMaskIndex.from_probabilities((h, w), enumerate(probs))
    dense = (probs >= 0.5).numpy()
    for q in range(len(maps)):
        np.testing.assert_array_equal(index.mask(q), dense[q])
        assert index.areas[q] == dense[q].sum()
    assert index.boxes[2].tolist() == [0, h, 9, 18] and index.areas[3] == 0
    for y in range(h):
        for x in range(w):
            assert index.covering(y, x).tolist() == np.flatnonzero(dense[:, y, x]).tolist()
    assert index.nbytes < dense.size // 8  # tight boxes, packed bits


def test_accept_replaces_the_segment_under_the_click_with_the_mask():
    mask = np.zeros(SMALL.shape, bool)
    mask[0:3, 2:5] = True  # over segment 2's left half, an unlabeled column, and a corner of 2's hole
    segments = _small_table()
    new_map, table = proposals.accept(SMALL, segments, mask, GRASS, 0.42, at=(0, 3), vocabulary=SMALL_VOCAB)
    expected = np.where(SMALL == 2, 0, SMALL)
    expected[mask] = 6
    np.testing.assert_array_equal(new_map, expected)
    check_consistency(new_map, table, SMALL_VOCAB)
    row = table[table["id"] == 6].iloc[0]
    assert (row["category"], row["score"], row["area"], row["source"]) == ("grass", 0.42, 9, "edited")
    assert 2 not in table["id"].tolist()  # the replaced segment is gone
    unchanged = table[table["id"] != 6][["id", "category", "area", "source"]]
    before = segments[segments["id"] != 2][["id", "category", "area", "source"]]
    assert unchanged.reset_index(drop=True).equals(before.reset_index(drop=True))


def test_accept_can_fill_only_unlabeled_pixels():
    mask = np.zeros(SMALL.shape, bool)
    mask[0:3, 0:4] = True  # segment 1's left part, segment 2's first column, unlabeled pixels
    new_map, table = proposals.accept(
        SMALL, _small_table(), mask, DOG, 0.3, at=(1, 2), only_unlabeled=True, vocabulary=SMALL_VOCAB
    )
    expected = SMALL.copy()
    expected[mask & (SMALL == 0)] = 6  # (1, 2) is unlabeled: no segment gives up its pixels
    np.testing.assert_array_equal(new_map, expected)
    assert table.set_index("id").loc[[1, 2], "area"].tolist() == [9, 8]  # untouched
    # on a segment: it gives its pixels up first, then only unlabeled pixels are filled
    new_map, _ = proposals.accept(
        SMALL, _small_table(), mask, DOG, 0.3, at=(0, 0), only_unlabeled=True, vocabulary=SMALL_VOCAB
    )
    expected = np.where(SMALL == 1, 0, SMALL)
    expected[mask & (expected == 0)] = 6
    np.testing.assert_array_equal(new_map, expected)
    assert (new_map[4:, 6:] == 0).all()  # segment 1's other part went with it


def _small_table():
    info = [{"id": i, "category_id": c.id, "isthing": c.isthing, "score": 0.5}
            for i, c in [(1, CAT), (2, CAT), (3, DOG), (4, GRASS), (5, DOG)]]
    return PanopticResult.from_segments_info(SMALL, info, SMALL_VOCAB).segments


def test_accepting_a_model_proposal_in_a_layer_is_one_undo_step(predictor, result):
    """The edit through the layer state (as the Refine panel commits it); napari's undo brings
    pixels and table back."""
    data, rows, claimed = initial_labels(result.label_map.shape, {(): result})
    layer = Labels(data)
    state = SegmentationLayer(layer, STREET, rows, claimed=claimed, model_results={(): result})
    before_map, before_table = np.array(layer.data), state.table.copy()
    y, x = 48, 64
    chosen = proposals.proposals_at(predictor, result, y, x)[1]
    mask = proposals.proposal_mask(predictor, result, chosen)
    old_table = state.plane_table(())
    new_map, new_table = proposals.accept(
        np.array(layer.data), old_table, mask, chosen.category, chosen.score, (y, x), vocabulary=STREET
    )
    state.commit((), new_map, new_table, old_table)
    under, new_id = before_map[y, x], int(layer.data[y, x])
    assert under > 0 and new_id not in before_map
    outside = ~(mask | (before_map == under))
    np.testing.assert_array_equal(layer.data[outside], before_map[outside])  # nothing else moved
    assert (layer.data[mask] == new_id).all() and (layer.data == new_id).sum() == mask.sum()
    assert (layer.data[(before_map == under) & ~mask] == 0).all()
    row = state.table[state.table["id"] == new_id].iloc[0]
    assert (row["category"], row["score"], row["source"]) == (chosen.category.name, chosen.score, "edited")
    layer.undo()
    np.testing.assert_array_equal(layer.data, before_map)
    assert state.table.equals(before_table)


def test_categories_follow_the_vocabulary(predictor, result):
    y, x = 48, 64
    street = proposals.proposals_at(predictor, result, y, x)
    animals = proposals.proposals_at(predictor, result, y, x, vocabulary=ANIMALS)
    assert {p.category.name for p in animals} <= set(ANIMALS.names)
    assert_same(animals, brute_force(predictor, result, y, x, ANIMALS))
    relabelled = predictor.reclassify(result, ANIMALS)  # a vocabulary change in a script
    assert listing(proposals.proposals_at(predictor, relabelled, y, x)) == listing(animals)
    # back again: its own classes again, not the last vocabulary's (nothing stale is reused)
    assert listing(proposals.proposals_at(predictor, result, y, x, vocabulary=STREET)) == listing(street)


def test_a_batch_store_result_gives_the_same_proposals(predictor, result, tmp_path):
    settings = result.settings
    header = {
        "format": 1, "model": "tiny", "precision": "fp32", "encode_settings": settings.encode_part(),
        "embeddings": "float32", "labels": labelset_id(STREET, settings),
    }
    store = BatchStore.open_or_create(tmp_path / "s.zarr", header, STREET, settings)
    store.write_image("a.png", "a.png", 0, result.label_map.shape, result.encoded)
    store.write_labels("a.png", result)
    loaded = BatchStore.open(tmp_path / "s.zarr").load_result("a.png", with_encoded=True)
    assert loaded.encoded is not result.encoded
    for y, x in PIXELS:
        assert listing(proposals.proposals_at(predictor, loaded, y, x)) == listing(
            proposals.proposals_at(predictor, result, y, x)
        )


def test_results_without_tensors_and_pixels_outside_are_refused(predictor, result):
    imported = PanopticResult(result.label_map, result.segments, result.vocabulary)
    with pytest.raises(proposals.NoModelTensorsError, match="no model tensors"):
        proposals.proposals_at(predictor, imported, 0, 0)
    with pytest.raises(InvalidInputError, match="outside the image"):
        proposals.proposals_at(predictor, result, 96, 0)


def test_prepare_builds_once_and_prepared_says_when_a_click_needs_no_model_call(predictor):
    fresh = predictor.predict(random_image(64, 80, seed=3), STREET, settings=predictor.named_settings("demo"))
    assert not proposals.prepared(predictor, fresh, STREET)
    proposals.prepare(predictor, fresh)  # the result's own vocabulary
    assert proposals.prepared(predictor, fresh, STREET) and not proposals.prepared(predictor, fresh, ANIMALS)
    index = proposals.mask_index(predictor, fresh)
    proposals.prepare(predictor, fresh, ANIMALS)  # another vocabulary: same index, new classes
    assert proposals.prepared(predictor, fresh, ANIMALS) and proposals.mask_index(predictor, fresh) is index
    calls = []
    original = predictor.class_logprobs
    predictor.class_logprobs = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        assert listing(proposals.proposals_at(predictor, fresh, 10, 10, ANIMALS)) == brute_force(
            predictor, fresh, 10, 10, ANIMALS
        )
    finally:
        del predictor.class_logprobs
    assert calls == []  # prepared: the click read only what was built
    imported = PanopticResult.from_segments_info(np.zeros_like(fresh.label_map), [], STREET)
    assert proposals.prepared(predictor, imported)  # nothing to build: proposals_at says why at once
