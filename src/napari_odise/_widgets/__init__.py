"""napari widgets: UI and layer plumbing over the headless core (Predictor, Vocabulary, refine).

The headless parts (``session``, ``layer_state``, ``relabel``, ``actions``, ``job``,
``vocabulary_model``) import no Qt and are testable with ``napari.components.ViewerModel``.
"""
