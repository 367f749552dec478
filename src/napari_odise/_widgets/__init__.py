"""napari widgets: UI and layer plumbing over the headless core (Predictor, Vocabulary, refine,
io, train).

The headless parts (``session``, ``layer_state``, ``relabel``, ``actions``, ``job``,
``vocabulary_model``, ``checkpoints``, ``training_run``, ``export_plan``, ``dataset_review``)
import no Qt and are testable with ``napari.components.ViewerModel``.
"""
