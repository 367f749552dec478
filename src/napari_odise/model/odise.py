"""The ODISE model: frozen Stable Diffusion + CLIP, trainable head, open-vocabulary classifier.

Inference is split where the vocabulary enters; every call takes the frozen
:class:`~.settings.InferenceSettings` it runs with (default: the config's), and the model keeps none:
  ``encode(image)``  -> EncodedImage: everything that does not depend on the vocabulary (the
                        diffusion backbone, pixel decoder, transformer decoder, MaskCLIP mask
                        embeddings). This is the expensive part.
  ``classify(encoded, vocab_embedding)`` -> (Q, K + 1) class log-probabilities: milliseconds.
  ``panoptic / semantic / instances(encoded, logprobs, ...)`` -> outputs at the image's size.
``forward`` runs all three and equals the official CategoryODISE / CaptionODISE eval forward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import clip_encoder
from .config import ODISEConfig
from .diffusion_features import DiffusionFeatureExtractor
from .ensemble import geometric_ensemble, max_over_synonyms, with_background
from .heads import CategoryHead, scaled_cosine
from .implicit_captioner import ImplicitCaptioner
from .mask_cache import MaskCache
from .pixel_decoder import PixelDecoder
from .settings import InferenceSettings
from .postprocess import (
    MaskGeometry,
    instance_inference,
    panoptic_inference,
    semantic_inference,
)
from .preprocess import resize_image, to_model_input
from .sliding_window import FeatureProjector, slide
from .text_embeddings import TextEmbeddingCache, VocabularyEmbedding, embed_vocabulary
from .transformer_decoder import MaskedTransformerDecoder

ProgressFn = Callable[[str, int, int], None]


@dataclass(eq=False)
class EncodedImage:
    """Vocabulary-independent per-query outputs for one image (CPU tensors).

    Compared by identity (it is a cache key for the image's full-size masks).
    """

    mask_logits: torch.Tensor  # (Q, Hp / 4, Wp / 4)
    mask_embed: torch.Tensor  # (Q, mask_dim) ODISE open-vocabulary embeddings
    clip_mask_embed: torch.Tensor  # (Q, clip_dim) MaskCLIP embeddings
    logit_scale: float  # ODISE's learned temperature (clamped at 100)
    clip_logit_scale: float
    class_logits: torch.Tensor | None  # (Q, 2) foreground/background (caption model only)
    geometry: MaskGeometry
    settings: InferenceSettings  # what it was encoded with (the resize and crop options matter)

    @property
    def num_queries(self) -> int:
        return self.mask_logits.shape[0]


class ODISE(nn.Module):
    """Build with :func:`napari_odise.model.build.build_odise`."""

    def __init__(self, config: ODISEConfig, clip, unet, vae, empty_context: torch.Tensor, noise: torch.Tensor):
        super().__init__()
        self.config = config
        head = config.head
        self.clip = clip
        self.features = DiffusionFeatureExtractor(
            unet, vae, config.encoder_taps, config.unet_taps, config.decoder_taps, noise
        )
        self.register_buffer("empty_context", empty_context, persistent=False)
        clip_dim = clip.text_projection.shape[-1]
        time_dim = unet.time_embedding.linear_2.out_features
        self.captioner = ImplicitCaptioner(clip_dim, tuple(empty_context.shape[1:]), time_dim)
        self.backbone = FeatureProjector(self.features.taps, head, config.min_stride, config.max_stride)
        channels = {g.name: head.projection_dim for g in self.backbone.groups}
        strides = {g.name: g.stride for g in self.backbone.groups}
        names = [g.name for g in self.backbone.groups]
        if head.conv_dim != head.hidden_dim:
            raise ValueError("the transformer decoder reads the pixel decoder's maps: conv_dim must equal hidden_dim")
        self.pixel_decoder = PixelDecoder(
            channels,
            strides,
            tuple(names[1:]),
            head.conv_dim,
            head.mask_dim,
            head.norm_groups,
            head.encoder_layers,
            head.encoder_heads,
            head.encoder_ffn,
            head.encoder_points,
        )
        self.decoder = MaskedTransformerDecoder(
            head.hidden_dim,
            head.mask_dim,
            head.num_queries,
            head.decoder_heads,
            head.decoder_ffn,
            head.decoder_layers,
            num_classes=1 if config.variant == "caption" else None,
            temperature=head.temperature,
        )
        self.category_head = CategoryHead(clip_dim, head.mask_dim, with_null_embed=config.variant == "label")
        self.text_cache = TextEmbeddingCache()
        self.mask_cache = MaskCache()
        self.gradient_checkpointing = False  # recompute UNet activations in backward (training)
        for module in (self.clip, self.features):
            for p in module.parameters():
                p.requires_grad_(False)

    # -- structure ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.empty_context.device

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {
            "captioner": self.captioner,
            "backbone": self.backbone,
            "pixel_decoder": self.pixel_decoder,
            "decoder": self.decoder,
            "category_head": self.category_head,
        }

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for prefix, module in self.trainable_modules().items():
            for key, value in module.state_dict().items():
                out[f"{prefix}.{key}"] = value
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        self.features.eval()
        return self

    # -- vocabulary ---------------------------------------------------------------------------
    def embed_vocabulary(self, synonyms: list[list[str]], isthing: list[bool], seen: list[bool]) -> VocabularyEmbedding:
        return embed_vocabulary(
            self.clip, self.text_cache, synonyms, isthing, seen, with_raw=self.config.variant == "label"
        )

    # -- backbone -----------------------------------------------------------------------------
    def _run_crops(self, crops01: torch.Tensor, crop_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            clip_embed = clip_encoder.image_embedding(self.clip, crops01, self.config.clip)
        context, time_condition = self.captioner(clip_embed.to(self.empty_context.dtype), self.empty_context)
        # The UNet is frozen but not detached: in training, gradients reach the captioner through it.
        if self.gradient_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(self._diffuse_and_project, crops01, context, time_condition, crop_hw, use_reentrant=False)
        return self._diffuse_and_project(crops01, context, time_condition, crop_hw)

    def _diffuse_and_project(self, crops01, context, time_condition, crop_hw):
        return self.backbone(self.features(crops01, context, time_condition), crop_hw)

    def _settings(self, settings: InferenceSettings | None) -> InferenceSettings:
        return self.config.inference if settings is None else settings

    def backbone_features(
        self, padded01: torch.Tensor, progress: ProgressFn | None = None, settings: InferenceSettings | None = None
    ) -> dict[str, torch.Tensor]:
        inf = self._settings(settings)
        step = None if progress is None else functools.partial(progress, "backbone")
        return slide(
            padded01,
            inf.crop_size,
            self.backbone.groups,
            self.backbone.out_channels,
            self._run_crops,
            max(1, inf.crop_batch_size),
            step,
        )

    def head_outputs(self, features: dict[str, torch.Tensor], all_layers: bool = False) -> dict:
        mask_features, multi_scale = self.pixel_decoder(features)
        return self.decoder(multi_scale, mask_features, all_layers=all_layers)

    # -- inference ----------------------------------------------------------------------------
    def prepare(
        self, image: np.ndarray, settings: InferenceSettings | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, MaskGeometry]:
        """uint8 RGB (H, W, 3) -> (padded input, unpadded input, geometry), on the model's device."""
        inf = self._settings(settings)
        resized = resize_image(image, inf.short_edge, inf.max_size)
        padded, unpadded = to_model_input(resized, inf.size_divisibility, self.device)
        geometry = MaskGeometry(
            padded_size=tuple(padded.shape[-2:]),
            input_size=tuple(unpadded.shape[-2:]),
            output_size=tuple(image.shape[:2]),
        )
        return padded, unpadded, geometry

    @torch.no_grad()
    def encode(
        self, image: np.ndarray, progress: ProgressFn | None = None, settings: InferenceSettings | None = None
    ) -> EncodedImage:
        """Everything that does not depend on the vocabulary, for one uint8 RGB image."""
        settings = self._settings(settings)
        padded, unpadded, geometry = self.prepare(image, settings)
        features = self.backbone_features(padded, progress, settings)
        if progress is not None:
            progress("decoder", 0, 1)
        out = self.head_outputs(features)
        mask_logits = out["mask_logits"]
        clip_embed = clip_encoder.mask_embeddings(self.clip, unpadded, mask_logits, self.config.clip)
        if progress is not None:
            progress("decoder", 1, 1)
        class_logits = out.get("class_logits")
        return EncodedImage(
            mask_logits=mask_logits[0].float().cpu(),
            mask_embed=out["mask_embed"][0].float().cpu(),
            clip_mask_embed=clip_embed[0].float().cpu(),
            logit_scale=float(out["logit_scale"]),
            clip_logit_scale=float(clip_encoder.logit_scale(self.clip)),
            class_logits=None if class_logits is None else class_logits[0].float().cpu(),
            geometry=geometry,
            settings=settings,
        )

    @torch.no_grad()
    def classify(
        self, encoded: EncodedImage, vocab: VocabularyEmbedding, settings: InferenceSettings | None = None
    ) -> torch.Tensor:
        """(Q, K + 1) class log-probabilities of every query; the last column is "no object"."""
        inf = self._settings(settings)
        head = self.category_head
        device = head.text_proj.weight.device
        mask_embed = encoded.mask_embed.to(device)
        scale = torch.tensor(encoded.logit_scale, device=device)
        prompt_text = vocab.photo.to(device)
        clip_logits = max_over_synonyms(
            scaled_cosine(encoded.clip_mask_embed.to(device), prompt_text, torch.tensor(encoded.clip_logit_scale)),
            vocab.counts,
        )
        if self.config.variant == "label":
            logits = head.logits_with_no_object(mask_embed, vocab.raw.to(device), vocab.counts, scale)
            category_logits = logits[:, :-1]
            p_background = logits.softmax(-1)[:, -1]
        else:
            category_logits = head.category_logits(mask_embed, prompt_text, vocab.counts, scale)
            p_background = encoded.class_logits.to(device).softmax(-1)[:, 1]
        ensembled = geometric_ensemble(category_logits, clip_logits, vocab.seen, inf.alpha, inf.beta)
        return with_background(ensembled, p_background).cpu()

    def query_masks(self, encoded: EncodedImage, settings: InferenceSettings | None = None):
        """The image's full-size query masks (kept in memory within ``mask_cache_mb``)."""
        budget = self._settings(settings).mask_cache_mb * 2**20
        return self.mask_cache.get(encoded, encoded.mask_logits, encoded.geometry, budget)

    def panoptic(
        self,
        encoded: EncodedImage,
        class_logprobs: torch.Tensor,
        isthing: list[bool],
        settings: InferenceSettings | None = None,
    ):
        inf = self._settings(settings)
        return panoptic_inference(
            class_logprobs,
            self.query_masks(encoded, inf),
            isthing,
            encoded.geometry,
            inf.overlap_threshold,
            inf.object_mask_threshold,
        )

    def semantic(self, encoded: EncodedImage, class_logprobs: torch.Tensor, settings: InferenceSettings | None = None):
        return semantic_inference(class_logprobs, self.query_masks(encoded, settings), encoded.geometry)

    def instances(
        self,
        encoded: EncodedImage,
        class_logprobs: torch.Tensor,
        isthing: list[bool],
        settings: InferenceSettings | None = None,
    ):
        return instance_inference(
            class_logprobs, encoded.mask_logits, isthing, encoded.geometry, self._settings(settings).instances_topk
        )

    def forward(self, image: np.ndarray, vocab: VocabularyEmbedding, settings: InferenceSettings | None = None):
        """One-shot panoptic inference: (label map int32 (H, W), segments)."""
        encoded = self.encode(image, settings=settings)
        logprobs = self.classify(encoded, vocab, settings)
        return self.panoptic(encoded, logprobs, vocab.isthing, settings)
