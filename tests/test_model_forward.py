"""End-to-end forward of the tiny model, and the parts whose arithmetic can be checked by hand."""

import numpy as np
import torch
from torch.nn import functional as F

from conftest import fast_tiny, random_image
from napari_odise.model import clip_encoder
from napari_odise.model.maskclip_attention import mask_token_bias, mask_token_pass
from napari_odise.model.sliding_window import crop_boxes

VOCAB = ([["cat", "kitty"], ["dog"], ["sky", "clouds"], ["grass"]], [True, True, False, False], [True, True, True, False])


def test_full_forward_on_a_non_square_image_with_two_crops(tiny_model):
    image = random_image(96, 160)
    padded, unpadded, geometry = tiny_model.prepare(image)
    # 96x160 -> shortest edge 128 -> 128x213, padded to 128x256: two 128 crops
    assert tuple(unpadded.shape[-2:]) == (128, 213) and tuple(padded.shape[-2:]) == (128, 256)
    assert len(crop_boxes(128, 256, tiny_model.config.inference.crop_size)[1]) == 2
    vocab = tiny_model.embed_vocabulary(*VOCAB)
    label_map, segments = tiny_model(image, vocab)
    assert label_map.shape == (96, 160) and label_map.dtype == torch.int32
    ids = sorted(set(np.unique(label_map.numpy())) - {0})
    assert ids == [s.id for s in segments]
    for s in segments:
        assert 0 <= s.category_index < 4
        assert s.isthing == VOCAB[1][s.category_index]


def test_encode_then_classify_equals_forward(tiny_model):
    image = random_image(80, 120, seed=3)
    vocab = tiny_model.embed_vocabulary(*VOCAB)
    one_shot_map, one_shot_segments = tiny_model(image, vocab)
    encoded = tiny_model.encode(image)
    logprobs = tiny_model.classify(encoded, vocab)
    split_map, split_segments = tiny_model.panoptic(encoded, logprobs, vocab.isthing)
    torch.testing.assert_close(split_map, one_shot_map, rtol=0, atol=0)
    assert split_segments == one_shot_segments


def test_outputs_are_deterministic_for_a_seed():
    image = random_image(64, 96, seed=5)
    a = fast_tiny()
    b = fast_tiny()
    ea, eb = a.encode(image), b.encode(image)
    torch.testing.assert_close(ea.mask_logits, eb.mask_logits, rtol=0, atol=0)
    torch.testing.assert_close(ea.clip_mask_embed, eb.clip_mask_embed, rtol=0, atol=0)
    c = fast_tiny(init_seed=1)
    assert not torch.equal(c.encode(image).mask_logits, ea.mask_logits)


def test_classify_matches_the_official_formula(tiny_model):
    """Label model: ODISE logits, CLIP logits, seen/unseen ensemble and background, step by step."""
    encoded = tiny_model.encode(random_image(64, 64, seed=7))
    vocab = tiny_model.embed_vocabulary(*VOCAB)
    got = tiny_model.classify(encoded, vocab)

    head = tiny_model.category_head
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    text = head.text_proj(vocab.raw)
    syn = n(encoded.mask_embed) @ n(text).T * encoded.logit_scale
    clip_syn = n(encoded.clip_mask_embed) @ n(vocab.photo).T * encoded.clip_logit_scale
    starts = np.cumsum([0] + vocab.counts)
    cat = torch.stack([syn[:, starts[k] : starts[k + 1]].max(1).values for k in range(4)], 1)
    clip = torch.stack([clip_syn[:, starts[k] : starts[k + 1]].max(1).values for k in range(4)], 1)
    null = n(encoded.mask_embed) @ n(head.text_proj(head.null_embed)).T * encoded.logit_scale
    p_bg = torch.cat([cat, null], 1).softmax(1)[:, -1]
    p, q = cat.softmax(1), clip.softmax(1)
    exponents = torch.tensor([0.3, 0.3, 0.3, 0.7])  # categories 0-2 seen, 3 unseen
    ens = (p ** (1 - exponents) * q**exponents).log()
    expected = torch.log(torch.cat([ens.softmax(1) * (1 - p_bg[:, None]), p_bg[:, None]], 1) + 1e-8)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_caption_model_uses_its_binary_head(tiny_caption_model):
    model = tiny_caption_model
    assert model.category_head.null_embed is None and model.decoder.class_embed is not None
    encoded = model.encode(random_image(64, 96, seed=2))
    assert encoded.class_logits.shape == (model.config.head.num_queries, 2)
    vocab = model.embed_vocabulary(*VOCAB)
    assert vocab.raw is None  # the caption model only embeds "a photo of a {}."
    logprobs = model.classify(encoded, vocab)
    p_bg = encoded.class_logits.softmax(-1)[:, 1]
    torch.testing.assert_close(logprobs.exp()[:, -1], p_bg + 1e-8, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logprobs.exp().sum(-1), torch.ones(len(p_bg)) + 5e-8, rtol=1e-5, atol=1e-5)


def test_maskclip_token_with_full_mask_equals_plain_clip(tiny_model):
    """A mask token that may see every patch computes exactly what the class token computes."""
    clip, cfg = tiny_model.clip, tiny_model.config.clip
    image = torch.rand(1, 3, 40, 70, generator=torch.Generator().manual_seed(0))
    masks = torch.full((1, 3, 10, 10), 20.0)
    masks[0, 1] = -20.0  # a query that sees no patch differs from the class token
    got = clip_encoder.mask_embeddings(clip, image, masks, cfg)
    resized = F.interpolate(image, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False)
    plain = clip.encode_image(clip_encoder.normalize_for_clip(resized, cfg))
    torch.testing.assert_close(got[0, 0], plain[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[0, 2], plain[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got[0, 1], plain[0], atol=1e-3)


def test_maskclip_attention_layout():
    blocked = torch.tensor([[[False, True, True], [True, True, False]]])  # 2 queries, 3 patches
    bias = mask_token_bias(blocked, dtype=torch.float32)
    assert bias.shape == (1, 1, 6, 4)  # broadcast over heads; keys: the class token and patches only
    allowed = (bias[0, 0] == 0).int().tolist()
    assert allowed == [
        # cls p0 p1 p2
        [1, 1, 0, 0],  # query 0 sees the class token and patch 0
        [1, 0, 0, 1],  # query 1 sees the class token and patch 2
        [1, 1, 1, 1],  # class token: as in a plain forward
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
    ]


def full_square_bias(patch_blocked, num_heads):
    """The official layout: (B * heads, N, N) over all Q + 1 + P tokens, mask-token columns -inf."""
    b, q, p = patch_blocked.shape
    n = q + 1 + p
    blocked = torch.zeros(b, n, n, dtype=torch.bool)
    blocked[:, :, :q] = True
    blocked[:, :q, q + 1 :] = patch_blocked
    bias = torch.zeros(b, n, n).masked_fill_(blocked, float("-inf"))
    return bias.repeat_interleave(num_heads, dim=0)


def test_maskclip_pass_equals_open_clip_transformer_with_the_full_mask(tiny_model):
    """Keys and values of the class and patch tokens only, and a last layer of mask tokens only,
    compute what open_clip's transformer computes with the full (Q + 1 + P)-square mask."""
    visual = tiny_model.clip.visual
    generator = torch.Generator().manual_seed(3)
    b, q, p, width = 2, 5, 9, visual.transformer.width
    x = torch.randn(b, q + 1 + p, width, generator=generator)
    blocked = torch.rand(b, q, p, generator=generator) < 0.5
    blocked[0, 0] = True  # a query that sees only the class token
    heads = visual.transformer.resblocks[0].attn.num_heads
    with torch.no_grad():
        expected = visual.transformer(x, attn_mask=full_square_bias(blocked, heads))[:, :q]
        got = mask_token_pass(visual.transformer, x, q, mask_token_bias(blocked, x.dtype))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_captioner_starts_from_the_unconditional_model(tiny_model):
    cap = tiny_model.captioner
    assert torch.count_nonzero(cap.context_gate) == 0 and torch.count_nonzero(cap.time_gate) == 0
    emb = torch.randn(3, tiny_model.clip.text_projection.shape[-1])
    context, time_condition = cap(emb, tiny_model.empty_context)
    torch.testing.assert_close(context, tiny_model.empty_context.expand(3, -1, -1))
    assert torch.count_nonzero(time_condition) == 0 and time_condition.shape == (3, cap.time_gate.shape[0])


def test_text_embeddings_are_cached_by_string(tiny_model):
    cache = tiny_model.text_cache
    before = cache.encoded_strings
    tiny_model.embed_vocabulary([["zebra crossing"], ["lamp post"]], [False, True], [False, False])
    assert cache.encoded_strings == before + 4  # 2 raw + 2 prompted
    tiny_model.embed_vocabulary([["lamp post"], ["zebra crossing"]], [True, False], [False, False])
    assert cache.encoded_strings == before + 4
