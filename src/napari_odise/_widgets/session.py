"""What the widgets of one viewer share, without Qt: the model pool (one loaded copy of each
model for every widget and the batch runner), the vocabulary being edited, the fine-tuned checkpoints the model lists offer, and which Labels layer holds which
image's segmentation.

Testable with ``napari.components.ViewerModel()``. Work that takes long (loading a model,
segmenting, re-classifying) is written as functions the widgets run in napari thread workers; the
``apply_*`` methods put their results into layers and run on the main thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from napari_odise.models import DEVICES, OFFERED_MODELS, PRECISIONS, SETTINGS_NAMES, ModelSpec
from napari_odise.errors import UserError
from napari_odise.pool import ModelPool, default_pool
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

from .checkpoints import Checkpoints
from .job import Progress
from .layer_state import SegmentationLayer, initial_labels
from .linked_planes import link_layer_planes, recorded_rule, unlink_record
from .planes import PlaneKey, image_plane, labels_shape
from .proxies import unwrap
from .vocabulary_model import VocabularyModel

MODELS = OFFERED_MODELS
SETTINGS = SETTINGS_NAMES


@dataclass(frozen=True)
class ModelChoice:
    """A widget's model choice: which model (a :class:`ModelSpec`'s fields) and the named settings.
    "evaluation"/"demo" switch only the ensemble weights and the merge's kept-area threshold; the
    resolution options are the loaded model's own (a script or test may load one with others)."""

    model: str = "official"  # a name in MODELS or a checkpoint path
    device: str = "auto"
    precision: str = "fp32"
    settings: str = "evaluation"

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.model, self.device, self.precision)


class Session:
    _sessions: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()

    def __init__(self, viewer, pool: ModelPool | None = None):
        viewer = unwrap(viewer)
        self.viewer = viewer
        self._pool = pool
        self.vocabulary = VocabularyModel()
        self.choice = ModelChoice()  # the Segment widget's model choice (re-score of adopted layers)
        self.checkpoints = Checkpoints()  # fine-tuned models offered next to the official ones
        self.states: dict[Hashable, SegmentationLayer] = {}  # by the Labels layer's unique_id
        viewer.layers.events.removed.connect(self._on_layer_removed)

    @classmethod
    def of(cls, viewer) -> Session:
        """The session of a viewer (made on first use), shared by all the plugin's widgets; the
        same for the viewer and any plugin proxy of it (see :mod:`.proxies`)."""
        viewer = unwrap(viewer)
        if viewer not in cls._sessions:
            cls._sessions[viewer] = cls(viewer)
        return cls._sessions[viewer]

    # --- models --------------------------------------------------------------------------------
    @property
    def pool(self) -> ModelPool:
        """The process's model pool (shared with the Batch widget and the batch runner), unless
        this session was given its own."""
        return self._pool if self._pool is not None else default_pool()

    def predictor(self, choice: ModelChoice):
        """The loaded predictor for a choice (loads it the first time: run in a worker)."""
        return self.pool.get(choice.spec)

    def add_checkpoint(self, path) -> str:
        """Offer a fine-tuned checkpoint in the model lists. Models loaded from that path before
        are freed: the file may have been rewritten (fine-tuning again into the same folder), and
        the next run must load what is there now."""
        path = self.checkpoints.add(path)
        self.pool.release(path)
        return path

    # --- layers --------------------------------------------------------------------------------
    def state(self, labels_layer) -> SegmentationLayer:
        """The ONE segmentation state of a Labels layer (adopting layers the plugin did not
        make): every widget edits and draws from it, so table, names and semantic layer agree."""
        labels_layer = unwrap(labels_layer)
        if labels_layer.unique_id not in self.states:
            fallback = self.vocabulary.vocabulary or Vocabulary.preset("coco")
            self.register(SegmentationLayer.adopt(labels_layer, fallback))
        return self.states[labels_layer.unique_id]

    def known(self, labels_layer) -> SegmentationLayer | None:
        """The state of a layer the session follows already (None: it would have to adopt it)."""
        return self.states.get(unwrap(labels_layer).unique_id)

    def register(self, state: SegmentationLayer) -> SegmentationLayer:
        """Follow a state made for a layer (before the layer enters the viewer, so no widget
        adopts it a second time)."""
        self.states[state.layer.unique_id] = state
        return state

    def result_layer(self, image_layer):
        """The Labels layer holding this image's segmentation, if any."""
        image_layer = unwrap(image_layer)
        for state in self.states.values():
            if state.image_layer is image_layer and state.layer in self.viewer.layers:
                return state.layer
        return None

    def _on_layer_removed(self, event) -> None:
        state = self.states.pop(unwrap(event.value).unique_id, None)
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
            predictor = self.predictor(choice)
            settings = predictor.named_settings(choice.settings)
            results = {}
            for index, key in enumerate(planes):

                def progress(stage, done, total, index=index):
                    report(Progress(stage, done, total, index, len(planes)))

                results[key] = predictor.predict(
                    image_plane(image_layer, key),
                    vocabulary,
                    progress=progress,
                    contrast_limits=contrast_limits,
                    settings=settings,
                )
            return results

        return work

    def apply_segmentation(
        self,
        image_layer,
        results: dict[PlaneKey, PanopticResult],
        vocabulary: Vocabulary,
        choice: ModelChoice,
        link: float | None = None,
    ):
        """Put a run's results into the image's Labels layer (made on the first run, named
        "<image> panoptic"); on later runs edits are kept by :mod:`.relabel`'s rule. ``link``:
        the IoU threshold to link a stack's planes at (see :meth:`link_stack`), None not to."""
        from napari.layers import Labels

        image_layer = unwrap(image_layer)
        info = {**asdict(choice), "image": image_layer.name}
        first = next(iter(results.values()), None)
        if first is not None and first.settings is not None:
            info["inference"] = first.settings.to_dict()
        existing = self.result_layer(image_layer)
        if existing is not None:
            state = self.state(existing)
            state.apply_results(results, vocabulary, info)
            self.link_stack(state, link, several=len(results) > 1)
            return existing
        data, rows, claimed = initial_labels(labels_shape(image_layer), results)
        layer = Labels(
            data,
            name=f"{image_layer.name} panoptic",
            scale=image_layer.scale,
            translate=image_layer.translate,
        )
        # the state exists before the layer enters the viewer: a widget following the active
        # layer (Refine) must find this state, not adopt the new layer a second time
        state = SegmentationLayer(
            layer,
            vocabulary,
            rows,
            info=info,
            image_layer=image_layer,
            model_results=results,
            claimed=claimed,
        )
        self.register(state)
        self.link_stack(state, link, several=len(results) > 1)
        return self.viewer.add_layer(layer)

    def link_stack(self, state: SegmentationLayer, threshold: float | None, several: bool = True) -> int:
        """After a run on a stack: link its planes (:mod:`.linked_planes`) when the run segmented
        ``several`` planes or the layer was linked before; ``threshold`` None: do not, and
        forget the layer's record. Returns how many objects span several planes."""
        if threshold is None:
            unlink_record(state)
            return 0
        if several or recorded_rule(state) is not None:
            return link_layer_planes(state, threshold)
        return 0

    # --- vocabulary changes --------------------------------------------------------------------
    def warm_work(self, presets: list[str], choice: ModelChoice) -> Callable[[Callable[[Progress], None]], dict[str, int]]:
        """Work (for :meth:`Job.run`) embedding presets ahead of use with ``Predictor.warm``, as
        ``napari-odise vocab warm`` does: progress per preset (``plane``) in categories; returns
        how many new strings each preset sent through CLIP."""

        def work(report):
            report(Progress("load", 0, 1, 0, len(presets)))
            predictor = self.predictor(choice)
            counts = {}
            for index, name in enumerate(presets):

                def progress(stage, done, total, index=index):
                    report(Progress("text", done, total, index, len(presets)))

                counts[name] = predictor.warm(Vocabulary.preset(name), progress)
            return counts

        return work

    def relabel_work(
        self, state: SegmentationLayer, vocabulary: Vocabulary
    ) -> Callable[[], dict[PlaneKey, PanopticResult]] | None:
        """Re-classification of a layer's planes under a new vocabulary from the cached model
        tensors (no backbone run), or None when the layer has none (then only names change)."""
        choice = _recorded_choice(state.info)
        predictor = None if choice is None else self.pool.peek(choice.spec)
        if predictor is None or not state.model_results:
            return None
        planes = dict(state.model_results)

        def work():
            return {key: predictor.reclassify(result, vocabulary) for key, result in planes.items()}

        return work

    def apply_relabel(self, state: SegmentationLayer, results, vocabulary: Vocabulary) -> None:
        if results is None:
            state.set_vocabulary(vocabulary)
        else:
            state.apply_results(results, vocabulary)
            rule = recorded_rule(state)
            if rule is not None:  # a linked stack stays linked under the new categories
                link_layer_planes(state, *rule)

    def loaded_predictor(self, state: SegmentationLayer):
        """The already loaded model that made a layer (None: not loaded, or not recorded)."""
        choice = _recorded_choice(state.info)
        return None if choice is None else self.pool.peek(choice.spec)

    # --- re-scoring an edited segment ----------------------------------------------------------
    def rescore_work(
        self, state: SegmentationLayer, key: PlaneKey, segment_id: int, image_layer
    ) -> Callable[[], dict[int, float]]:
        """The model's category probabilities for one segment's current mask (``Predictor.rescore``),
        with the model that made the layer, else the Segment widget's choice."""
        mask = np.asarray(state.plane(key)) == segment_id
        picture = image_plane(image_layer, key)
        limits = None if image_layer.rgb else tuple(image_layer.contrast_limits)
        choice = _recorded_choice(state.info) or self.choice
        vocabulary = state.vocabulary

        def work():
            return self.predictor(choice).rescore(picture, mask, vocabulary, contrast_limits=limits)

        return work


def _recorded_choice(info: dict) -> ModelChoice | None:
    """The model choice a layer's metadata records (None when it has none, or a model file is gone)."""
    if not all(k in info for k in ("model", "device", "precision")):
        return None
    fields = {k: info[k] for k in ("model", "device", "precision", "settings") if k in info}
    try:
        choice = ModelChoice(**fields)
        choice.spec  # noqa: B018 - checks the model name or file
    except UserError:
        return None
    return choice


__all__ = ["DEVICES", "MODELS", "PRECISIONS", "SETTINGS", "ModelChoice", "Session"]
