"""The fine-tuning loop: ODISE's head trained on exported annotations, frozen SD and CLIP.

AdamW (no weight decay on norms and biases, as detectron2), warm-up then ODISE's step schedule
(or cosine), gradient-norm clipping (ODISE: 0.01), mixed precision on GPU, optional gradient
checkpointing of the diffusion backbone, a validation PQ on held-out images, and resumable
checkpoints: ``<output>/last.pt`` holds the head, optimizer, step and random states, so a resumed
run continues the same schedule with the same samples. The result is ``<output>/model.pth`` in
the official key layout, with ``model.config.json``, ``vocabulary.json`` and ``training.json``
beside it; the Predictor loads it by path.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_odise import errors
from napari_odise.atomic import atomic_write_text, atomic_writer
from napari_odise.checkpoints.head_loading import official_state_dict
from napari_odise.checkpoints.loading import finetuned_config_path, load_model
from napari_odise.errors import InvalidInputError
from napari_odise.model.odise import ODISE
from napari_odise.model.settings import InferenceSettings

from .augment import JitterConfig
from .criterion import LossWeights, set_criterion
from .dataset import PanopticTrainingData
from .errors import ResumeCheckpointError, TrainingDivergedError
from .pq import PQStats
from .schedule import lr_factor

log = logging.getLogger(__name__)
LAST_LAYER_LOSSES = ("loss_ce", "loss_mask", "loss_dice")
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class FinetuneConfig:
    dataset: str
    output: str
    base_model: str = "official"
    steps: int = 2000
    batch_size: int = 2
    image_size: int = 1024  # LSJ crop size (a multiple of 64)
    min_scale: float = 0.1
    max_scale: float = 2.0
    lr: float = 1e-4
    weight_decay: float = 0.05
    grad_clip: float | None = 0.01
    warmup_steps: int = 50
    warmup_factor: float = 0.067
    schedule: str = "step"
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    val_fraction: float = 0.2
    val_every: int = 500
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    loss: LossWeights = field(default_factory=LossWeights)
    val_short_edge: int | None = None  # test-time resize for validation (default: image_size)

    def __post_init__(self):
        if self.image_size % 64:
            raise InvalidInputError(f"image_size must be a multiple of 64, got {self.image_size}")
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}")
        if isinstance(self.loss, dict):
            self.loss = LossWeights(**self.loss)


@dataclass
class StepReport:
    step: int
    total: int
    losses: dict[str, float]
    lr: float
    val_pq: float | None = None


class Cancelled(errors.Cancelled):
    """Raised inside the loop when ``should_stop`` returns True (the last checkpoint is kept)."""


class Finetuner:
    def __init__(self, config: FinetuneConfig, model: ODISE | None = None, resume: bool = True):
        from napari_odise.predictor import resolve_device

        self.config = config
        self.output = Path(config.output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.data = PanopticTrainingData(config.dataset, config.val_fraction, config.seed)
        self.device = resolve_device(config.device)
        if PRECISIONS[config.precision] is not None and self.device.type != "cuda":
            raise InvalidInputError("mixed precision training needs a CUDA GPU; use precision='fp32' on the CPU")
        self.model = (model if model is not None else load_model(config.base_model)).to(self.device)
        if self.model.config.variant != "label":
            raise InvalidInputError(
                "fine-tuning trains the label model (ODISE's category-label objective); the caption model was "
                "trained from captions, which exported datasets do not have. Use base_model='official'."
            )
        self.model.gradient_checkpointing = config.gradient_checkpointing
        vocab = self.data.vocabulary
        self.text = self.model.embed_vocabulary(vocab.synonym_lists(), [c.isthing for c in vocab], vocab.seen_mask())
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
        self.rng = np.random.default_rng(config.seed)
        self.torch_rng = torch.Generator().manual_seed(config.seed)
        self.jitter = JitterConfig(config.image_size, config.min_scale, config.max_scale)
        self.step = 0
        self._updating = False
        self.history: list[dict] = []
        if resume and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.output / "last.pt"

    @property
    def model_path(self) -> Path:
        return self.output / "model.pth"

    # -- one step -------------------------------------------------------------------------------
    def class_logits(self, mask_embed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.model.category_head.logits_with_no_object(
            mask_embed, self.text.raw.to(self.device), self.text.counts, scale
        )

    def losses(self, images: torch.Tensor, labels, masks) -> dict[str, torch.Tensor]:
        dtype = PRECISIONS[self.config.precision]
        autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)
        with autocast:
            features = self.model.backbone_features(images.to(self.device))
            out = self.model.head_outputs(features, all_layers=True)
            scale = out["logit_scale"]
            predictions = [
                {"class_logits": self.class_logits(p["mask_embed"], scale), "mask_logits": p["mask_logits"]}
                for p in [*out["aux"], out]
            ]
        return set_criterion(predictions, labels, [m.to(self.device) for m in masks], self.config.loss, self.torch_rng)

    def train_step(self) -> StepReport:
        """One optimizer step. An exception before the update (Ctrl+C included) leaves the trainer at
        the last step boundary: only the random states had moved, and they are put back, so a
        checkpoint saved then resumes exactly. ``at_step_boundary`` says whether that holds."""
        config = self.config
        factor = lr_factor(self.step, config.steps, config.warmup_steps, config.warmup_factor, config.schedule)
        states = self._random_states()
        try:
            values = self._backward(config.lr * factor)
        except BaseException:
            self._set_random_states(states)
            raise
        self._updating = True
        self.scaler.step(self.optimizer)
        self.scaler.update()
        report = StepReport(self.step + 1, config.steps, values, config.lr * factor)
        self.history.append({"step": report.step, "lr": report.lr, **values})
        self.step += 1
        self._updating = False
        return report

    def _backward(self, lr: float) -> dict[str, float]:
        """Gradients of one batch (clipped); the weights and optimizer are not touched yet."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        images, labels, masks = self.data.batch(self.config.batch_size, self.jitter, self.rng)
        losses = self.losses(images, labels, masks)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(trainable_parameters(self.model), self.config.grad_clip)
        values = {k: float(losses[k].detach()) for k in LAST_LAYER_LOSSES}
        values["total"] = float(total.detach())
        return values

    @property
    def at_step_boundary(self) -> bool:
        """False only when an update was cut short: saving then would not resume exactly."""
        return not self._updating

    def _random_states(self) -> tuple[dict, torch.Tensor]:
        return self.rng.bit_generator.state, self.torch_rng.get_state()  # both fresh copies

    def _set_random_states(self, states: tuple[dict, torch.Tensor]) -> None:
        self.rng.bit_generator.state, torch_state = states
        self.torch_rng.set_state(torch_state)

    # -- validation -----------------------------------------------------------------------------
    def evaluate(self, names: list[str] | None = None) -> float:
        """PQ of the current model on held-out images (the full inference path, no augmentation)."""
        names = self.data.val_names if names is None else names
        return self.evaluate_stats(names).pq() if names else float("nan")

    def evaluate_stats(self, names: list[str] | None = None) -> PQStats:
        """The PQ counts behind :meth:`evaluate`, for PQ per category or of the things alone."""
        names = self.data.val_names if names is None else names
        stats = PQStats()
        for name in names:
            sample = self.data.samples[name]
            stats.add(*self.predict(name), sample.label_map, sample.categories)
        return stats

    @torch.no_grad()
    def predict(self, name: str) -> tuple[np.ndarray, dict[int, int]]:
        """(label map, {segment id: category id}) of a dataset image, as validation sees it."""
        model = self.model.eval()
        ids = self.data.vocabulary.ids
        settings = self.validation_settings()
        encoded = model.encode(self.data.samples[name].image, settings=settings)
        logprobs = model.classify(encoded, self.text, settings)
        label_map, segments = model.panoptic(encoded, logprobs, self.text.isthing, settings)
        self.model.mask_cache.clear()
        return label_map.numpy(), {s.id: ids[s.category_index] for s in segments}

    def validation_settings(self) -> InferenceSettings:
        """The model's settings with the test-time resize at the training size (or ``val_short_edge``)."""
        own = self.model.config.inference
        short_edge = self.config.val_short_edge or self.config.image_size
        return own.replace(short_edge=short_edge, max_size=max(own.max_size, short_edge))

    # -- the loop -------------------------------------------------------------------------------
    def run(
        self,
        progress: Callable[[StepReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Path:
        """Train up to ``config.steps`` (from the resumed step), then export; returns model.pth."""
        config = self.config
        started = time.perf_counter()
        while self.step < config.steps:
            if should_stop is not None and should_stop():
                self.save_checkpoint()
                raise Cancelled(f"stopped at step {self.step}; run again to resume")
            report = self.train_step()
            if not all(math.isfinite(v) for v in report.losses.values()):
                raise TrainingDivergedError(
                    f"the loss became {report.losses['total']} at step {self.step}: lower the learning rate"
                )
            if config.val_every and (self.step % config.val_every == 0 or self.step == config.steps):
                report.val_pq = self.evaluate()
                self.history[-1]["val_pq"] = report.val_pq
            if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                self.save_checkpoint()
            if progress is not None:
                progress(report)
        self.save_checkpoint()
        return self.export(time.perf_counter() - started)

    # -- saving ---------------------------------------------------------------------------------
    def save_checkpoint(self, path: Path | None = None) -> Path:
        path = Path(path or self.checkpoint_path)
        state = {
            "step": self.step,
            "head": {k: v.detach().cpu() for k, v in self.model.trainable_state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": self.torch_rng.get_state(),
            "history": json.dumps(self.history),
            "config": json.dumps(_plain(asdict(self.config))),
        }
        _atomic_torch_save(state, path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Resume from ``last.pt``. The file is data: anything wrong with it is one refusal that
        names it (loaded with weights_only, so nothing in it runs), never a traceback."""
        try:
            self._resume_from(path)
        except errors.UserError:
            raise
        except pickle.UnpicklingError as error:
            if "weights only" not in str(error).lower():  # not a pickle at all: damaged
                raise ResumeCheckpointError(
                    f"{path} cannot be resumed from (it is not a PyTorch checkpoint): it is "
                    "damaged. Delete it (or choose another output folder) to start fine-tuning "
                    "afresh"
                ) from None
            raise ResumeCheckpointError(
                f"{path} is not a plain training checkpoint: it asks to import or run Python code, "
                "so it was refused and nothing from it was executed. Delete it (or choose another "
                "output folder) to start fine-tuning afresh"
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, OSError, EOFError) as error:
            detail = (str(error).strip().splitlines() or [""])[0][:200]
            raise ResumeCheckpointError(
                f"{path} cannot be resumed from ({type(error).__name__}: {detail}): it is damaged or "
                "was not written by this napari-odise. Delete it (or choose another output folder) "
                "to start fine-tuning afresh"
            ) from None

    def _resume_from(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a training state")
        saved = json.loads(state["config"])
        if not isinstance(saved, dict):
            raise TypeError("its config is not a JSON object")
        for key in ("steps", "lr", "schedule", "warmup_steps", "dataset"):
            if saved.get(key) != _plain(getattr(self.config, key)):
                log.warning("resuming with %s=%r (the checkpoint used %r)", key, getattr(self.config, key), saved.get(key))
        from napari_odise.checkpoints.head_loading import load_head_into

        load_head_into(self.model, {k: v.to(self.device) for k, v in state["head"].items()})
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self.torch_rng.set_state(state["torch_rng"])
        history = json.loads(state["history"])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise TypeError("its history is not a list of records")
        step = state["step"]
        if isinstance(step, torch.Tensor):
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"its step {step!r} is not a whole number >= 0")
        self.history = history
        self.step = step
        log.info("resumed from %s at step %d", path, self.step)

    def export(self, seconds: float = 0.0) -> Path:
        """model.pth (official layout) + model.config.json + vocabulary.json + training.json."""
        _atomic_torch_save({"model": official_state_dict(self.model), "iteration": self.step}, self.model_path)
        config_file = {"config": self.model.config.to_dict(), "base_model": base_model_name(self.config.base_model)}
        atomic_write_text(finetuned_config_path(self.model_path), json.dumps(config_file, indent=1, sort_keys=True))
        self.data.vocabulary.save(self.output / "vocabulary.json")
        record = {
            "steps": self.step,
            "seconds": round(seconds, 1),
            "dataset": str(Path(self.config.dataset).resolve()),
            "train_images": self.data.train_names,
            "val_images": self.data.val_names,
            "final_val_pq": next((h["val_pq"] for h in reversed(self.history) if "val_pq" in h), None),
            "config": _plain(asdict(self.config)),
            "history": self.history,
        }
        atomic_write_text(self.output / "training.json", json.dumps(record, indent=1))
        return self.model_path


def base_model_name(base: str) -> str:
    """The model whose frozen parts a checkpoint sits on (a fine-tuned base passes its own on)."""
    from napari_odise.checkpoints.loading import describe_checkpoint
    from napari_odise.models import MODEL_NAMES

    return base if base in MODEL_NAMES else describe_checkpoint(base).base


def trainable_parameters(model: ODISE) -> list[nn.Parameter]:
    return [p for m in model.trainable_modules().values() for p in m.parameters() if p.requires_grad]


def param_groups(model: ODISE, weight_decay: float) -> list[dict]:
    """detectron2's default groups: no weight decay for normalisation layers and biases."""
    norms = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)
    decay, no_decay = [], []
    for module in model.trainable_modules().values():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                (no_decay if isinstance(sub, norms) or name == "bias" else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_writer(path) as stream:
        torch.save(obj, stream)
