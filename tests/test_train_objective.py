"""Matcher, losses, point sampling and PQ against small hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from napari_odise.train.criterion import LossWeights, class_loss, dice_loss, set_criterion, sigmoid_bce_loss
from napari_odise.train.matcher import hungarian_match, pairwise_dice, pairwise_sigmoid_bce
from napari_odise.train.point_sampling import point_sample, uncertain_point_coords
from napari_odise.train.pq import PQStats, panoptic_quality
from napari_odise.train.schedule import lr_factor


def test_point_sample_reads_pixel_centres_and_interpolates():
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # 2x2
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]])
    assert point_sample(maps, coords)[0, 0].tolist() == [0.0, 1.0, 2.0, 1.5]


def test_uncertain_points_prefer_logits_near_zero():
    logits = torch.full((1, 1, 8, 8), 10.0)
    logits[..., :, 4:] = 0.0  # the right half is uncertain
    coords = uncertain_point_coords(logits, num_points=40, oversample_ratio=3, importance_sample_ratio=0.75,
                                    generator=torch.Generator().manual_seed(0))
    assert coords.shape == (1, 40, 2)
    assert bool((coords[0, :30, 0] >= 0.5 - 1 / 16).all())  # the 30 important points: right half


def test_pairwise_costs_by_hand():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    targets = torch.tensor([[1.0, 0.0]])
    bce = pairwise_sigmoid_bce(logits, targets)
    assert bce[0, 0].item() == pytest.approx(math.log(2))
    assert bce[1, 0].item() == pytest.approx(math.log1p(math.exp(-10)), abs=1e-6)
    dice = pairwise_dice(logits, targets)
    # query 0: probs (0.5, 0.5): 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3
    assert dice[0, 0].item() == pytest.approx(1 / 3)


def test_hungarian_match_pairs_queries_with_their_segments():
    masks = torch.zeros(2, 8, 8)
    masks[0, :4] = 1  # top half
    masks[1, 4:] = 1  # bottom half
    mask_logits = torch.full((3, 8, 8), -10.0)
    mask_logits[2, :4] = 10  # query 2 predicts the top half
    mask_logits[0, 4:] = 10  # query 0 predicts the bottom half
    class_logits = torch.zeros(3, 3)
    rows, cols = hungarian_match(class_logits, mask_logits, torch.tensor([0, 1]), masks, num_points=256,
                                 generator=torch.Generator().manual_seed(0))
    assert dict(zip(rows.tolist(), cols.tolist())) == {2: 0, 0: 1}


def test_class_loss_weights_no_object():
    logits = torch.zeros(1, 2, 3)  # uniform: CE = log 3 for every query
    matches = [(torch.tensor([0]), torch.tensor([0]))]
    loss = class_loss(logits, matches, [torch.tensor([1])], no_object_weight=0.1)
    # weighted mean: (1 * log3 + 0.1 * log3) / (1 + 0.1) = log 3
    assert loss.item() == pytest.approx(math.log(3))
    logits = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]])
    loss = class_loss(logits, matches, [torch.tensor([1])], no_object_weight=0.1)
    ce_matched = -F.log_softmax(torch.tensor([0.0, 5.0, 0.0]), 0)[1]
    expected = (ce_matched + 0.1 * math.log(3)) / 1.1
    assert loss.item() == pytest.approx(expected.item())


def test_mask_losses_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert sigmoid_bce_loss(logits, targets, 1.0).item() == pytest.approx(math.log(2))
    # dice: probs 0.5 each: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(logits, targets, 1.0).item() == pytest.approx(0.4)
    assert dice_loss(logits, targets, 2.0).item() == pytest.approx(0.2)  # normalised by segment count


def test_set_criterion_has_deep_supervision_and_official_weights(monkeypatch):
    from napari_odise.train import criterion

    # points in the middle of the mask: no border interpolation, so the targets are exactly 1
    monkeypatch.setattr(criterion, "uncertain_point_coords", lambda logits, n, *a: torch.full((logits.shape[0], n, 2), 0.5))
    g = torch.Generator().manual_seed(0)
    layer = {"class_logits": torch.zeros(1, 4, 3), "mask_logits": torch.zeros(1, 4, 8, 8)}
    masks = [torch.ones(1, 8, 8)]
    losses = set_criterion([layer, layer, layer], [torch.tensor([0])], masks, LossWeights(num_points=64), g)
    assert set(losses) == {f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1")}
    # all-zero logits: CE log 3, BCE log 2, dice 1 - (64 + 1) / (32 + 64 + 1) per layer, times 2 / 5 / 5
    assert losses["loss_ce"].item() == pytest.approx(2 * math.log(3))
    assert losses["loss_mask_0"].item() == pytest.approx(5 * math.log(2))
    assert losses["loss_dice_1"].item() == pytest.approx(5 * (1 - 65 / 97))


def test_pq_hand_computed():
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]])
    gt_cats = {1: 10, 2: 20, 3: 10}
    pred = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [1, 4, 5, 5], [4, 4, 5, 5]])
    pred_cats = {1: 10, 2: 20, 4: 10, 5: 30}
    stats = PQStats()
    stats.add(pred, pred_cats, gt, gt_cats)
    # cat 10: gt1 vs pred1 IoU 4/5 (TP); gt3 vs pred4 IoU 3/4 (TP) -> (0.8 + 0.75) / 2
    # cat 20: exact (TP, IoU 1); cat 30: pred5 lies entirely on void: ignored
    assert stats.per_category() == pytest.approx({10: 0.775, 20: 1.0})
    assert stats.pq() == pytest.approx((0.775 + 1.0) / 2)
    assert stats.pq([20, 30]) == pytest.approx(1.0)  # 30 has no counts: not averaged in
    assert stats.pq([10]) == pytest.approx(0.775) and stats.pq([99]) == 0.0


def test_pq_counts_false_positives_and_negatives():
    gt = np.array([[1, 1], [2, 2]])
    pred = np.array([[1, 1], [1, 1]])
    # pred1 (cat 7) vs gt1 (cat 7): IoU 2/4 = 0.5, not > 0.5: FP and FN; gt2 (cat 8): FN
    value = panoptic_quality([(pred, {1: 7}, gt, {1: 7, 2: 8})])
    assert value == 0.0
    assert panoptic_quality([(gt, {1: 7, 2: 8}, gt, {1: 7, 2: 8})]) == 1.0


def test_schedule_warmup_and_official_steps():
    assert lr_factor(0, 1000, 100) == pytest.approx(0.067)
    assert lr_factor(50, 1000, 100) == pytest.approx(0.067 * 0.5 + 0.5)
    assert lr_factor(500, 1000, 100) == 1.0
    assert lr_factor(900, 1000, 100) == pytest.approx(0.1)  # after 88.9 %
    assert lr_factor(970, 1000, 100) == pytest.approx(0.01)  # after 96.3 %
    assert lr_factor(500, 1000, 0, kind="cosine") == pytest.approx(0.5)
