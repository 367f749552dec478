"""Model configuration as plain dataclasses, with the two presets that build offline.

``official_config()`` reproduces the released ODISE models (Stable Diffusion v1.3 UNet + VAE,
OpenAI CLIP ViT-L/14-336, the Mask2Former-style head of configs/Panoptic/odise_*_coco_50e.py).
``tiny_config()`` keeps the same structure (every block, tap and code path) with small widths so
the whole model runs in seconds on a CPU with random weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from napari_odise.errors import InvalidInputError

from .settings import InferenceSettings

Variant = Literal["label", "caption"]


@dataclass
class UNetConfig:
    """Keyword arguments of diffusers' ``UNet2DConditionModel`` that differ between presets."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: int = 8
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    sample_size: int = 64

    def diffusers_kwargs(self) -> dict:
        return dict(
            sample_size=self.sample_size,
            in_channels=4,
            out_channels=4,
            down_block_types=(
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ),
            up_block_types=(
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ),
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            attention_head_dim=self.attention_head_dim,
            cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=self.norm_num_groups,
            flip_sin_to_cos=True,
            freq_shift=0,
            # ODISE adds a learned projection of the CLIP image embedding to the time embedding;
            # diffusers' "identity" class embedding is exactly "emb = emb + class_labels".
            class_embed_type="identity",
        )


@dataclass
class VAEConfig:
    """Keyword arguments of diffusers' ``AutoencoderKL``."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 512
    scaling_factor: float = 0.18215

    def diffusers_kwargs(self) -> dict:
        n = len(self.block_out_channels)
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=self.norm_num_groups,
            sample_size=self.sample_size,
            scaling_factor=self.scaling_factor,
        )


@dataclass
class CLIPConfig:
    """open_clip ``CLIP`` arguments. OpenAI's weights need QuickGELU."""

    embed_dim: int = 768
    image_size: int = 336
    patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_head_width: int = 64
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 768
    text_heads: int = 12
    text_layers: int = 12
    quick_gelu: bool = True
    # OpenAI preprocessing constants (open_clip's OPENAI_DATASET_MEAN / STD)
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    def open_clip_kwargs(self) -> dict:
        return dict(
            embed_dim=self.embed_dim,
            quick_gelu=self.quick_gelu,
            vision_cfg=dict(
                image_size=self.image_size,
                layers=self.vision_layers,
                width=self.vision_width,
                patch_size=self.patch_size,
                head_width=self.vision_head_width,
            ),
            text_cfg=dict(
                context_length=self.context_length,
                vocab_size=self.vocab_size,
                width=self.text_width,
                heads=self.text_heads,
                layers=self.text_layers,
            ),
        )


@dataclass
class SDTextConfig:
    """transformers ``CLIPTextConfig`` of Stable Diffusion v1's text encoder (openai/clip-vit-large-patch14)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    vocab_size: int = 49408
    projection_dim: int = 768

    def transformers_kwargs(self) -> dict:
        return dict(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            max_position_embeddings=self.max_position_embeddings,
            vocab_size=self.vocab_size,
            projection_dim=self.projection_dim,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )


@dataclass
class HeadConfig:
    """The trainable head: feature projections, pixel decoder, transformer decoder, text projection."""

    projection_dim: int = 512  # backbone feature projections (ResNet bottleneck out channels)
    bottleneck_dim: int = 128  # = projection_dim // 4 in the official code
    norm_groups: int = 32  # GroupNorm groups everywhere in the head
    conv_dim: int = 256  # pixel decoder width
    mask_dim: int = 256
    encoder_layers: int = 6
    encoder_heads: int = 8
    encoder_ffn: int = 1024
    encoder_points: int = 4
    hidden_dim: int = 256  # transformer decoder width
    num_queries: int = 100
    decoder_layers: int = 9
    decoder_heads: int = 8
    decoder_ffn: int = 2048
    temperature: float = 0.07  # initial logit scale = 1 / temperature


@dataclass
class ODISEConfig:
    variant: Variant = "label"
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    clip: CLIPConfig = field(default_factory=CLIPConfig)
    sd_text: SDTextConfig = field(default_factory=SDTextConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    inference: InferenceSettings = field(default_factory=InferenceSettings)  # this model's defaults
    # Feature taps (indices into ODISE's flattened block lists, see diffusion_features.py)
    encoder_taps: tuple[int, ...] = (5, 7)
    unet_taps: tuple[int, ...] = (2, 5, 8, 11)
    decoder_taps: tuple[int, ...] = (2, 5)
    min_stride: int = 4
    max_stride: int = 32
    noise_seed: int = 42  # the fixed DDPM noise: torch.randn(1, 4, 64, 64) from this seed
    noise_size: int = 64
    init_seed: int = 0  # random initialisation (tiny model, untrained heads)
    name: str = "official"

    @property
    def num_categories_trained(self) -> int:
        """Width of the training-time class head (COCO panoptic: 133; caption model: 1)."""
        return 133 if self.variant == "label" else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ODISEConfig":
        parts = {
            "unet": UNetConfig,
            "vae": VAEConfig,
            "clip": CLIPConfig,
            "sd_text": SDTextConfig,
            "head": HeadConfig,
        }
        kwargs = {}
        for key, value in data.items():
            if key == "inference":
                kwargs[key] = InferenceSettings.from_dict(value)
            elif key in parts:
                sub = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
                kwargs[key] = parts[key](**sub)
            else:
                kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def official_config(variant: Variant = "label") -> ODISEConfig:
    """The released model: odise_label_coco_50e (variant "label") or odise_caption_coco_50e."""
    inference = InferenceSettings.evaluation(variant)
    name = "official" if variant == "label" else "official-caption"
    return ODISEConfig(variant=variant, inference=inference, name=name)


def tiny_config(variant: Variant = "label") -> ODISEConfig:
    """Same architecture, small widths: for tests, demos and CPU-only trials (random weights)."""
    return ODISEConfig(
        variant=variant,
        # channel counts change at the same levels as SD's (so the same layers and key names exist)
        unet=UNetConfig(
            block_out_channels=(8, 16, 32, 32),
            attention_head_dim=2,
            cross_attention_dim=32,
            norm_num_groups=8,
            sample_size=16,
        ),
        vae=VAEConfig(block_out_channels=(8, 16, 32, 32), norm_num_groups=8, sample_size=128),
        clip=CLIPConfig(
            embed_dim=32,
            image_size=56,
            patch_size=14,
            vision_width=32,
            vision_layers=2,
            vision_head_width=16,
            text_width=32,
            text_heads=2,
            text_layers=2,
        ),
        sd_text=SDTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=32,
        ),
        head=HeadConfig(
            projection_dim=32,
            bottleneck_dim=8,
            norm_groups=8,
            conv_dim=32,
            mask_dim=32,
            encoder_layers=2,
            encoder_heads=4,
            encoder_ffn=64,
            encoder_points=2,
            hidden_dim=32,
            num_queries=16,
            decoder_layers=3,
            decoder_heads=4,
            decoder_ffn=64,
        ),
        # the official geometry (512 crops of a 1024-short-edge image): the tiny model's costs have
        # the official shape (the backbone dominates); tests shrink it with a smaller short_edge
        inference=InferenceSettings.evaluation(variant),
        name="tiny" if variant == "label" else "tiny-caption",
    )


PRESETS = {
    "official": lambda: official_config("label"),
    "official-caption": lambda: official_config("caption"),
    "tiny": lambda: tiny_config("label"),
    "tiny-caption": lambda: tiny_config("caption"),
}


def get_config(name: str) -> ODISEConfig:
    if name not in PRESETS:
        raise InvalidInputError(f"unknown model config {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
