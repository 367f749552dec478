"""OpenAI CLIP ViT-L/14-336 weights (OpenAI's archive or an open_clip state dict) -> our CLIP.

OpenAI's state dict uses open_clip's names plus three integers (input_resolution, context_length,
vocab_size) and stores fp16 tensors; they are dropped and upcast.
"""

from __future__ import annotations

import torch

from .weight_errors import check_state_dict

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def convert_clip(state: dict[str, torch.Tensor], clip, source: str) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    expected = {k: tuple(v.shape) for k, v in clip.state_dict().items()}
    # open_clip stores logit_scale as a 0-d tensor; OpenAI's archive as well, older dumps as (1,)
    if "logit_scale" in state and state["logit_scale"].ndim == 1 and expected.get("logit_scale") == ():
        state["logit_scale"] = state["logit_scale"].reshape(())
    check_state_dict(expected, state, source, "CLIP ViT-L/14-336 (open_clip layout)")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
