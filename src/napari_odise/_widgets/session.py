"""What the widgets of one viewer share, without Qt: loaded predictors, the vocabulary being
edited, the fine-tuned checkpoints the model lists offer, and which Labels layer holds which
image's segmentation.

Testable with ``napari.components.ViewerModel()``. Work that takes long (loading a model,
segmenting, re-classifying) is written as functions the widgets run in napari thread workers; the
``apply_*`` methods put their results into layers and run on the main thread.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from napari_odise.predictor import Predictor
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

from .checkpoints import Checkpoints
from .job import Progress
from .layer_state import SegmentationLayer, initial_labels
from .planes import PlaneKey, image_plane, labels_shape
from .vocabulary_model import VocabularyModel

MODELS = ("official", "official-caption", "tiny")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
SETTINGS = ("evaluation", "demo")
# Resolution options are the user's (or a test's) choice; "evaluation"/"demo" only switch the
# ensemble weights and the panoptic merge's kept-area threshold.
_GEOMETRY = ("short_edge", "max_size", "crop_size", "crop_batch_size", "mask_cache_mb")


@dataclass(frozen=True)
class ModelChoice:
    model: str = "official"  # a name in MODELS or a fine-tuned checkpoint path
    device: str = "auto"
    precision: str = "fp32"
    settings: str = "evaluation"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.device, self.precision)


class Session:
    _sessions: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()

    def __init__(self, viewer):
        self.viewer = viewer
        self.predictors: dict[tuple[str, str, str], Predictor] = {}
        self.vocabulary = VocabularyModel()
        self.choice = ModelChoice()  # the Segment widget's model choice (re-score of adopted layers)
        self.checkpoints = Checkpoints()  # fine-tuned models offered next to the official ones
        self.states: dict[int, SegmentationLayer] = {}  # by id() of the Labels layer
        # One model run at a time: a re-score or re-label waits for a running segmentation.
        self.model_lock = threading.Lock()
        viewer.layers.events.removed.connect(self._on_layer_removed)

    @classmethod
    def of(cls, viewer) -> Session:
        """The session of a viewer (made on first use), shared by all the plugin's widgets."""
        if viewer not in cls._sessions:
            cls._sessions[viewer] = cls(viewer)
        return cls._sessions[viewer]

    # --- predictors ----------------------------------------------------------------------------
    def predictor(self, choice: ModelChoice) -> Predictor:
        """The loaded predictor for a choice (loads it the first time: run in a worker)."""
        if choice.key not in self.predictors:
            self.predictors[choice.key] = Predictor.from_pretrained(
                choice.model, device=choice.device, precision=choice.precision
            )
        predictor = self.predictors[choice.key]
        geometry = {k: v for k, v in predictor.settings.items() if k in _GEOMETRY}
        predictor.configure(choice.settings, **geometry)
        return predictor

    def add_checkpoint(self, path) -> str:
        """Offer a fine-tuned checkpoint in the model lists. Predictors loaded from that path
        before are dropped: the file may have been rewritten (fine-tuning again into the same
        folder), and the next run must load what is there now."""
        path = self.checkpoints.add(path)
        for key in [key for key in self.predictors if key[0] == path]:
            del self.predictors[key]
        return path

    # --- layers --------------------------------------------------------------------------------
    def state(self, labels_layer) -> SegmentationLayer:
        """The segmentation state of a Labels layer, adopting layers the plugin did not make."""
        if id(labels_layer) not in self.states:
            fallback = self.vocabulary.vocabulary or Vocabulary.preset("coco")
            self.states[id(labels_layer)] = SegmentationLayer.adopt(labels_layer, fallback)
        return self.states[id(labels_layer)]

    def result_layer(self, image_layer):
        """The Labels layer holding this image's segmentation, if any."""
        for state in self.states.values():
            if state.image_layer is image_layer and state.layer in self.viewer.layers:
                return state.layer
        return None

    def _on_layer_removed(self, event) -> None:
        state = self.states.pop(id(event.value), None)
        if state is not None:
            state.close()

    # --- segmentation --------------------------------------------------------------------------
    def segment_work(
        self, image_layer, planes: list[PlaneKey], vocabulary: Vocabulary, choice: ModelChoice
    ) -> Callable[[Callable[[Progress], None]], dict[PlaneKey, PanopticResult]]:
        """The work of one Run (for :meth:`Job.run`): load the model, segment each plane."""
        contrast_limits = None if image_layer.rgb else tuple(image_layer.contrast_limits)

        def work(report):
            report(Progress("load", 0, 1, 0, len(planes)))
            with self.model_lock:
                predictor = self.predictor(choice)
                results = {}
                for index, key in enumerate(planes):

                    def progress(stage, done, total, index=index):
                        report(Progress(stage, done, total, index, len(planes)))

                    results[key] = predictor.predict(
                        image_plane(image_layer, key),
                        vocabulary,
                        progress=progress,
                        contrast_limits=contrast_limits,
                    )
            return results

        return work

    def apply_segmentation(
        self,
        image_layer,
        results: dict[PlaneKey, PanopticResult],
        vocabulary: Vocabulary,
        choice: ModelChoice,
    ):
        """Put a run's results into the image's Labels layer (made on the first run, named
        "<image> panoptic"); on later runs edits are kept by :mod:`.relabel`'s rule."""
        info = {**asdict(choice), "image": image_layer.name}
        first = next(iter(results.values()), None)
        if first is not None:
            info["inference"] = first.info.get("settings", {})
        existing = self.result_layer(image_layer)
        if existing is not None:
            self.states[id(existing)].apply_results(results, vocabulary, info)
            return existing
        data, rows, claimed = initial_labels(labels_shape(image_layer), results)
        layer = self.viewer.add_labels(
            data,
            name=f"{image_layer.name} panoptic",
            scale=image_layer.scale,
            translate=image_layer.translate,
        )
        self.states[id(layer)] = SegmentationLayer(
            layer,
            vocabulary,
            rows,
            info=info,
            image_layer=image_layer,
            model_results=results,
            claimed=claimed,
        )
        return layer

    # --- vocabulary changes --------------------------------------------------------------------
    def relabel_work(
        self, state: SegmentationLayer, vocabulary: Vocabulary
    ) -> Callable[[], dict[PlaneKey, PanopticResult]] | None:
        """Re-classification of a layer's planes under a new vocabulary from the cached model
        tensors (no backbone run), or None when the layer has none (then only names change)."""
        predictor = self.predictors.get(_choice_key(state.info))
        if predictor is None or not state.model_results:
            return None
        planes = dict(state.model_results)

        def work():
            with self.model_lock:
                return {key: predictor.reclassify(result, vocabulary) for key, result in planes.items()}

        return work

    def apply_relabel(self, state: SegmentationLayer, results, vocabulary: Vocabulary) -> None:
        if results is None:
            state.set_vocabulary(vocabulary)
        else:
            state.apply_results(results, vocabulary)

    # --- re-scoring an edited segment ----------------------------------------------------------
    def rescore_work(
        self, state: SegmentationLayer, key: PlaneKey, segment_id: int, image_layer
    ) -> Callable[[], dict[int, float]]:
        """The model's category probabilities for one segment's current mask (``Predictor.rescore``),
        with the model that made the layer, else the Segment widget's choice."""
        mask = np.asarray(state.plane(key)) == segment_id
        picture = image_plane(image_layer, key)
        limits = None if image_layer.rgb else tuple(image_layer.contrast_limits)
        choice = (
            self.choice
            if _choice_key(state.info) is None
            else ModelChoice(
                **{k: state.info[k] for k in ("model", "device", "precision", "settings") if k in state.info}
            )
        )
        vocabulary = state.vocabulary

        def work():
            with self.model_lock:
                return self.predictor(choice).rescore(picture, mask, vocabulary, contrast_limits=limits)

        return work


def _choice_key(info: dict) -> tuple[str, str, str] | None:
    if not all(k in info for k in ("model", "device", "precision")):
        return None
    return (info["model"], info["device"], info["precision"])


__all__ = ["DEVICES", "MODELS", "PRECISIONS", "SETTINGS", "ModelChoice", "Session"]
