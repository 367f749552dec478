"""The one CLIP (open_clip, OpenAI ViT-L/14-336) that ODISE uses three ways.

The official code holds three copies of the same weights; here a single instance serves:
  - the implicit captioner: the class-token image embedding of each crop;
  - text embeddings of category names (raw synonyms and the "a photo of a {}." prompt);
  - the mask classifier (MaskCLIP): one extra class token per query that may only attend to the
    class token and the patches under its mask.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .config import CLIPConfig
from .maskclip_attention import mask_token_bias, mask_token_pass


def build_clip(cfg: CLIPConfig):
    """An open_clip ``CLIP`` with random weights (weights are loaded separately)."""
    from open_clip.model import CLIP

    model = CLIP(**cfg.open_clip_kwargs())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def normalize_for_clip(images01: torch.Tensor, cfg: CLIPConfig) -> torch.Tensor:
    mean = torch.tensor(cfg.mean, dtype=images01.dtype, device=images01.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=images01.dtype, device=images01.device).view(1, 3, 1, 1)
    return (images01 - mean) / std


def preprocess_for_clip(images01: torch.Tensor, cfg: CLIPConfig) -> torch.Tensor:
    """open_clip's eval transform on tensors: shortest side to ``image_size`` (bicubic), centre crop, normalise.

    ODISE pinned torchvision 0.14, whose tensor Resize did not antialias: neither do we.
    """
    size = cfg.image_size
    h, w = images01.shape[-2:]
    if (h, w) != (size, size):
        if h <= w:
            new_h, new_w = size, int(size * w / h)
        else:
            new_h, new_w = int(size * h / w), size
        images01 = F.interpolate(
            images01, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=False
        )
        top = int(round((new_h - size) / 2.0))
        left = int(round((new_w - size) / 2.0))
        images01 = images01[..., top : top + size, left : left + size]
    return normalize_for_clip(images01, cfg)


@torch.no_grad()
def image_embedding(clip, images01: torch.Tensor, cfg: CLIPConfig) -> torch.Tensor:
    """(B, embed_dim) class-token embedding after ln_post and proj, not L2-normalised."""
    return clip.encode_image(preprocess_for_clip(images01, cfg), normalize=False)


def tokenize(texts: list[str], context_length: int = 77) -> torch.Tensor:
    import open_clip

    return open_clip.tokenize(texts, context_length=context_length)


@torch.no_grad()
def text_embeddings(clip, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """(N, embed_dim) text embeddings (EOT token, ln_final, projection), not L2-normalised.

    Strings are batched by token length and each batch runs only up to its longest sequence: the
    text tower is causal and reads the end-of-text token, so the padding after it never reaches the
    result (the 77-token run gives the same embeddings to float noise), and category names are
    short: most of the work of a padded run is padding."""
    if not texts:
        return torch.zeros(0, clip.text_projection.shape[-1])
    device = clip.token_embedding.weight.device
    tokens = tokenize(texts, clip.context_length)
    lengths = tokens.argmax(dim=-1) + 1  # the end-of-text token has the largest id
    order = torch.argsort(lengths, stable=True)
    out = torch.empty(len(texts), clip.text_projection.shape[-1])
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        length = int(lengths[rows].max())
        out[rows] = encode_tokens(clip, tokens[rows, :length].to(device)).float().cpu()
    return out


def encode_tokens(clip, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``encode_text`` on token sequences cut after their longest end-of-text token."""
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
    if isinstance(clip.text_projection, torch.nn.Linear):
        return clip.text_projection(x)
    return x @ clip.text_projection


def _vision_tokens(visual, pixels: torch.Tensor) -> torch.Tensor:
    """Class token + patch tokens after positional embedding and ln_pre: (B, 1 + P, width)."""
    x = visual.conv1(pixels)
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.ln_pre(x)


@torch.no_grad()
def mask_embeddings(clip, images01: torch.Tensor, mask_logits: torch.Tensor, cfg: CLIPConfig) -> torch.Tensor:
    """MaskCLIP embeddings (B, Q, embed_dim) of each query's mask.

    Args:
        images01: (B, 3, H, W) unpadded image in [0, 1]; resized to CLIP's input size without
            keeping the aspect ratio, as the official code does.
        mask_logits: (B, Q, h, w) mask logits at any resolution.
    """
    visual = clip.visual
    size = cfg.image_size
    images = F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False)
    masks = F.interpolate(mask_logits, size=(size, size), mode="bilinear", align_corners=False)
    pixels = normalize_for_clip(images, cfg)
    patch = visual.conv1.kernel_size
    patch_prob = F.max_pool2d(masks.sigmoid(), kernel_size=patch, stride=visual.conv1.stride)
    b, q = patch_prob.shape[:2]
    patch_blocked = (patch_prob < 0.5).flatten(2)

    tokens = _vision_tokens(visual, pixels.to(visual.conv1.weight.dtype))
    mask_tokens = tokens[:, :1].expand(-1, q, -1)
    x = torch.cat([mask_tokens, tokens], dim=1)
    x = mask_token_pass(visual.transformer, x, q, mask_token_bias(patch_blocked, x.dtype))
    x = visual.ln_post(x)
    return (x @ visual.proj).float()


def causal_mask(context_length: int) -> torch.Tensor:
    """CLIP's text attention mask: each token sees itself and the tokens before it (additive)."""
    return torch.full((context_length, context_length), float("-inf")).triu_(1)


def logit_scale(clip) -> torch.Tensor:
    """CLIP's temperature, clamped at 100 as the official code does."""
    return clip.logit_scale.exp().clamp(max=100)
