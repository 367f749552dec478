"""Panoptic merge and class-score arithmetic on hand-made inputs."""

import math

import numpy as np
import pytest
import torch

from napari_odise.model.ensemble import geometric_ensemble, max_over_synonyms, with_background
from napari_odise.model.postprocess import MaskGeometry, panoptic_inference, semantic_inference, instance_inference

ON, OFF = 12.0, -12.0
GEOM = MaskGeometry(padded_size=(4, 6), input_size=(4, 6), output_size=(4, 6))


def mask(cells):
    """Mask logits (4, 6): ON where ``cells`` (a boolean array) is set."""
    return torch.where(torch.as_tensor(cells), torch.tensor(ON), torch.tensor(OFF))


def cols(c0, c1, rows=slice(0, 4)):
    m = np.zeros((4, 6), bool)
    m[rows, c0:c1] = True
    return m


def logprobs(rows):
    """Rows of probabilities over (cat0, cat1, no-object) -> log-probabilities."""
    return torch.log(torch.tensor(rows, dtype=torch.float32))


ISTHING = [True, False]  # cat0 thing, cat1 stuff


def scene(extra_query):
    masks = [
        mask(cols(0, 3)),  # q0: thing, score 0.9
        mask(cols(3, 6, slice(0, 2))),  # q1: stuff, score 0.8
        mask(cols(3, 6, slice(2, 4))),  # q2: stuff (same category), score 0.7
        mask(np.ones((4, 6), bool)),  # q3: best class is "no object"
        mask(extra_query),  # q4: thing, score 0.85
    ]
    probs = [
        [0.9, 0.05, 0.05],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.2, 0.2, 0.6],
        [0.85, 0.1, 0.05],
    ]
    return logprobs(probs), torch.stack(masks)


def test_stuff_of_one_category_merges_and_no_object_is_dropped():
    # q4 lies entirely under q0, which scores higher: it gets no pixel and no segment
    lp, masks = scene(cols(1, 3))
    label_map, segments = panoptic_inference(lp, masks, ISTHING, GEOM, overlap_threshold=0.8)
    expected = np.array(
        [
            [1, 1, 1, 2, 2, 2],
            [1, 1, 1, 2, 2, 2],
            [1, 1, 1, 2, 2, 2],
            [1, 1, 1, 2, 2, 2],
        ]
    )
    np.testing.assert_array_equal(label_map.numpy(), expected)
    assert [(s.id, s.category_index, s.isthing, s.queries) for s in segments] == [
        (1, 0, True, [0]),
        (2, 1, False, [1, 2]),
    ]
    assert segments[0].score == np.float32(0.9).item()
    assert segments[1].score == np.float32(0.8).item()  # best of the merged queries


def test_kept_area_rule():
    # q4 covers columns 2-3; it wins column 3 (0.85 > 0.8 and 0.7) but loses column 2 to q0:
    # it keeps 4 of its 8 pixels, and q1/q2 keep 4 of 6 each.
    lp, masks = scene(cols(2, 4))
    strict, segs = panoptic_inference(lp, masks, ISTHING, GEOM, overlap_threshold=0.8)
    np.testing.assert_array_equal(
        strict.numpy(),
        np.array([[1, 1, 1, 0, 0, 0]] * 4),
    )
    assert [s.queries for s in segs] == [[0]]
    lenient, segs = panoptic_inference(lp, masks, ISTHING, GEOM, overlap_threshold=0.4)
    np.testing.assert_array_equal(
        lenient.numpy(),
        np.array(
            [
                [1, 1, 1, 3, 2, 2],
                [1, 1, 1, 3, 2, 2],
                [1, 1, 1, 3, 2, 2],
                [1, 1, 1, 3, 2, 2],
            ]
        ),
    )
    # segment ids follow query order: q0, then the stuff of q1 (+ q2), then q4
    assert [(s.id, s.category_index, s.queries) for s in segs] == [(1, 0, [0]), (2, 1, [1, 2]), (3, 0, [4])]


def test_object_mask_threshold_drops_low_scores():
    lp, masks = scene(cols(1, 3))
    label_map, segments = panoptic_inference(lp, masks, ISTHING, GEOM, object_mask_threshold=0.85)
    assert [s.queries for s in segments] == [[0]]
    assert set(np.unique(label_map.numpy())) == {0, 1}


def test_empty_when_every_query_is_background():
    lp = logprobs([[0.1, 0.1, 0.8]] * 2)
    masks = torch.stack([mask(cols(0, 6))] * 2)
    label_map, segments = panoptic_inference(lp, masks, ISTHING, GEOM)
    assert segments == [] and int(label_map.abs().sum()) == 0


def test_semantic_is_argmax_of_class_weighted_masks():
    lp, masks = scene(cols(1, 3))
    classes, score = semantic_inference(lp, masks, GEOM)
    probs = lp.softmax(-1)[:, :-1]
    dense = torch.einsum("qc,qhw->chw", probs, masks.sigmoid())
    np.testing.assert_array_equal(classes.numpy(), dense.argmax(0).numpy())
    torch.testing.assert_close(score, dense.max(0).values)


def test_instances_keep_things_only_with_mask_scores():
    lp, masks = scene(cols(1, 3))
    instances = instance_inference(lp, masks, ISTHING, GEOM, topk=4)
    # top-4 of the 5x2 scores: q0/cat0 .9, q4/cat0 .85, q1/cat1 .8 (stuff: dropped), q2/cat1 .7 (stuff)
    assert [(i.query, i.category_index) for i in instances] == [(0, 0), (4, 0)]
    p_on = torch.sigmoid(torch.tensor(ON)).item()
    assert instances[0].score == pytest.approx(0.9 * p_on, rel=1e-6)
    np.testing.assert_array_equal(instances[0].mask.numpy(), cols(0, 3))


def test_max_over_synonyms():
    logits = torch.tensor([[1.0, 5.0, 2.0, -1.0, 0.5, 0.25]])
    torch.testing.assert_close(max_over_synonyms(logits, [2, 1, 3]), torch.tensor([[5.0, 2.0, 0.5]]))


def test_geometric_ensemble_seen_and_unseen():
    odise = torch.log(torch.tensor([[0.8, 0.2]]))
    clip = torch.log(torch.tensor([[0.5, 0.5]]))
    out = geometric_ensemble(odise, clip, torch.tensor([True, False]), alpha=0.3, beta=0.7)
    expected = [math.log(0.8**0.7 * 0.5**0.3), math.log(0.2**0.3 * 0.5**0.7)]
    torch.testing.assert_close(out, torch.tensor([expected]))


def test_geometric_ensemble_does_not_produce_nan_on_underflow():
    # p underflows to exactly 0 for the second category; the official mask-multiply would give NaN
    odise = torch.tensor([[0.0, -200.0]])
    clip = torch.tensor([[0.0, 0.0]])
    out = geometric_ensemble(odise, clip, torch.tensor([True, True]), 0.3, 0.7)
    assert not torch.isnan(out).any()
    assert out[0, 1] == float("-inf")


def test_background_merge():
    logits = torch.log(torch.tensor([[0.6, 0.4]]))
    out = with_background(logits, torch.tensor([0.25]))
    expected = torch.log(torch.tensor([[0.6 * 0.75, 0.4 * 0.75, 0.25]]) + 1e-8)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_kept_masks_and_streaming_give_the_same_panoptic_map(seed):
    """The in-memory path (fused compiled merge) and the query-by-query path agree exactly, ties included."""
    from napari_odise.model.postprocess import QueryMasks

    g = torch.Generator().manual_seed(seed)
    geometry = MaskGeometry(padded_size=(64, 96), input_size=(60, 90), output_size=(45, 67))
    coarse = torch.randn(1, 12, 4, 6, generator=g) * 6  # smooth blobs, so several queries win pixels
    logits = torch.nn.functional.interpolate(coarse, size=(16, 24), mode="bilinear", align_corners=False)[0]
    logits[5] = logits[2]  # an exact tie between two queries: the first must win
    probs = torch.rand(12, 4, generator=g)
    probs[5] = probs[2]
    logprobs = torch.log(probs / probs.sum(1, keepdim=True))
    isthing = [True, False, True]
    kept = QueryMasks(logits, geometry)
    kept.materialize()
    kept.own_areas()
    for threshold in (0.0, 0.3):
        streamed = panoptic_inference(logprobs, logits, isthing, geometry, overlap_threshold=threshold)
        in_memory = panoptic_inference(logprobs, kept, isthing, geometry, overlap_threshold=threshold)
        np.testing.assert_array_equal(in_memory[0].numpy(), streamed[0].numpy())
        assert in_memory[1] == streamed[1]
    assert len(panoptic_inference(logprobs, kept, isthing, geometry, overlap_threshold=0.0)[1]) >= 2


def dense_reference_merge(logprobs, probs_full, overlap_threshold):
    """Mask2Former's panoptic rule written directly on full-size probabilities (one argmax)."""
    scores, labels = logprobs.softmax(-1).max(-1)
    kept = torch.nonzero(labels != logprobs.shape[-1] - 1).flatten()
    weighted = scores[kept, None, None] * probs_full[kept]
    owner = weighted.argmax(0)
    label_map = torch.zeros(probs_full.shape[1:], dtype=torch.int32)
    queries_of_segment = []
    for k, q in enumerate(kept.tolist()):
        won = owner == k
        own = probs_full[q] >= 0.5
        kept_pixels = won & own
        if won.sum() == 0 or own.sum() == 0 or kept_pixels.sum() == 0:
            continue
        if won.sum() / own.sum() < overlap_threshold:
            continue
        queries_of_segment.append(q)
        label_map[kept_pixels] = len(queries_of_segment)
    return label_map, queries_of_segment


@pytest.mark.parametrize("size", [(91, 90), (128, 64)])  # 8190 and 8192 pixels: around one chunk
def test_compiled_merge_equals_the_dense_argmax(size):
    """No-object queries interleaved, exact ties and probabilities that underflow to 0."""
    from napari_odise.model.postprocess import QueryMasks

    g = torch.Generator().manual_seed(11)
    geometry = MaskGeometry(padded_size=size, input_size=size, output_size=size)
    logits = torch.randn(10, *size, generator=g) * 3
    logits[3] = logits[1]  # identical masks and scores below: the first query must win
    logits[6, : size[0] // 2] = -200.0  # sigmoid underflows to exactly 0
    probs = torch.rand(10, 3, generator=g) + 0.1
    probs[3] = probs[1]
    probs[[2, 7], -1] = 10.0  # best class is "no object": never owns a pixel
    logprobs = torch.log(probs / probs.sum(1, keepdim=True))
    assert float(logits[6].sigmoid().min()) == 0.0
    isthing = [True, True, True]  # things only: one segment per query, as in the reference
    kept = QueryMasks(logits, geometry)
    kept.materialize()
    for threshold in (0.0, 0.5):
        label_map, segments = panoptic_inference(logprobs, kept, isthing, geometry, overlap_threshold=threshold)
        expected_map, expected_queries = dense_reference_merge(logprobs, logits.sigmoid(), threshold)
        np.testing.assert_array_equal(label_map.numpy(), expected_map.numpy())
        assert [s.queries for s in segments] == [[q] for q in expected_queries]
        assert [s.area for s in segments] == [int((label_map == s.id).sum()) for s in segments]
        assert 3 not in expected_queries and 2 not in expected_queries and 7 not in expected_queries
