"""The official configuration, built on the meta device: names, shapes, counts and trace shapes."""

import pytest
import torch

from checkpoint_factory import reference_keys
from napari_odise.model import clip_encoder
from napari_odise.model.build import build_odise
from napari_odise.checkpoints.key_mapping import official_to_ours, ours_to_official

@pytest.mark.parametrize(
    "config, reference, trainable",
    [
        ("official", "odise_label_coco_50e.model_keys.tsv", 28_067_009),
        ("official-caption", "odise_caption_coco_50e.model_keys.tsv", 28_066_755),
    ],
)
def test_trainable_parameters_match_the_official_checkpoint_one_to_one(config, reference, trainable):
    model = build_odise(config, device="meta")
    ours = {k: tuple(v.shape) for k, v in model.trainable_state_dict().items()}
    official = reference_keys(reference)
    mapped = {official_to_ours(k): shape for k, shape in official.items() if official_to_ours(k) is not None}
    assert set(official) - {"criterion.empty_weight"} == {ours_to_official(k, model.config.variant) for k in ours}
    assert mapped == ours
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    assert sum(v.numel() for v in model.trainable_state_dict().values()) == trainable


def test_frozen_parameters_are_sd_unet_vae_and_one_clip(official_meta_model):
    m = official_meta_model
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(m.features.unet) == 859_520_964
    assert count(m.features.vae) == 83_653_863
    assert count(m.clip) == 427_944_193
    assert sum(p.numel() for p in m.parameters() if not p.requires_grad) == 859_520_964 + 83_653_863 + 427_944_193


def test_official_shapes_for_a_512x640_input_equal_the_trace(official_meta_model):
    m = official_meta_model
    x = torch.empty(1, 3, 512, 640, device="meta")
    taps = []
    handles = [
        mod.register_forward_pre_hook(lambda _m, args: taps.append(tuple(args[0].shape)))
        for mod in m.features._encoder_modules + m.features._unet_modules + m.features._decoder_modules
    ]
    try:
        features = m.backbone_features(x)
    finally:
        for h in handles:
            h.remove()
    # two 512 crops, one batch; the 8 taps in the trace's table (section 3c)
    assert sorted(taps) == sorted(
        [(2, 512, 128, 128), (2, 512, 64, 64), (2, 2560, 8, 8), (2, 1920, 16, 16),
         (2, 960, 32, 32), (2, 640, 64, 64), (2, 512, 64, 64), (2, 512, 128, 128)]
    )
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "s2": (1, 512, 128, 160),
        "s3": (1, 512, 64, 80),
        "s4": (1, 512, 32, 40),
        "s5": (1, 512, 16, 20),
    }
    mask_features, multi_scale = m.pixel_decoder(features)
    assert tuple(mask_features.shape) == (1, 256, 128, 160)
    assert [tuple(f.shape) for f in multi_scale] == [(1, 256, 16, 20), (1, 256, 32, 40), (1, 256, 64, 80)]
    out = m.decoder(multi_scale, mask_features)
    assert tuple(out["mask_logits"].shape) == (1, 100, 128, 160)
    assert tuple(out["mask_embed"].shape) == (1, 100, 256)
    clip_embed = clip_encoder.mask_embeddings(m.clip, x, out["mask_logits"], m.config.clip)
    assert tuple(clip_embed.shape) == (1, 100, 768)
    context = torch.empty(2, 768, device="meta")
    cond, time_condition = m.captioner(context, m.empty_context)
    assert tuple(cond.shape) == (2, 77, 768) and tuple(time_condition.shape) == (2, 1280)


def test_official_inference_settings():
    from napari_odise.model.config import official_config

    label, caption = official_config("label"), official_config("caption")
    assert (label.inference.alpha, label.inference.beta) == (0.3, 0.7)
    assert (caption.inference.alpha, caption.inference.beta) == (0.35, 0.65)
    for c in (label, caption):
        inf = c.inference
        assert (inf.overlap_threshold, inf.object_mask_threshold) == (0.8, 0.0)
        assert (inf.short_edge, inf.max_size, inf.size_divisibility, inf.crop_size) == (1024, 2560, 64, 512)
        assert c.head.num_queries == 100 and c.head.decoder_layers == 9
