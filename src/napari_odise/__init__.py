"""napari-odise: open-vocabulary panoptic segmentation (ODISE) for napari.

The heavy parts (torch, the model) load lazily, so ``import napari_odise`` stays fast enough
for napari's plugin discovery.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-odise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "Vocabulary": "napari_odise.vocabulary",
    "Category": "napari_odise.vocabulary",
    "PanopticResult": "napari_odise.result",
    "Predictor": "napari_odise.predictor",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_odise' has no attribute {name!r}")
