"""Stable Diffusion's text context of the empty caption, computed once.

ODISE conditions the UNet on ``SD_text_encoder("") + tanh(gate) * projected CLIP image embedding``.
The text part never changes, so it is computed once at load time and kept as a (1, 77, D) tensor;
the 123M-parameter text encoder is then not needed any more.

SD v1's tokenizer (openai/clip-vit-large-patch14) pads with its end-of-text token, so "" becomes
[<start>, <end>, <end>, ... <end>] (77 ids). open_clip's tokenizer uses the same vocabulary but pads
with 0, so the ids are derived from it and the padding replaced.
"""

from __future__ import annotations

import torch

from .clip_encoder import tokenize
from .config import SDTextConfig


def empty_caption_ids(context_length: int = 77) -> torch.Tensor:
    ids = tokenize([""], context_length)
    end_of_text = int(ids[0, 1])
    ids[ids == 0] = end_of_text
    return ids


def build_sd_text_encoder(cfg: SDTextConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    model = CLIPTextModel(CLIPTextConfig(**cfg.transformers_kwargs()))
    model.eval()
    return model


@torch.no_grad()
def empty_context(text_encoder) -> torch.Tensor:
    """(1, 77, hidden) last hidden state (after the final layer norm) of the empty caption."""
    device = next(text_encoder.parameters()).device
    ids = empty_caption_ids(text_encoder.config.max_position_embeddings).to(device)
    return text_encoder(input_ids=ids).last_hidden_state.float()
