"""Sample photographs for File > Open Sample (shipped with scikit-image, no download)."""

from __future__ import annotations

import numpy as np

from napari_odise.errors import InvalidInputError

SAMPLES = {
    "astronaut": "Astronaut (scikit-image)",
    "coffee": "Coffee cup (scikit-image)",
    "chelsea": "Chelsea the cat (scikit-image)",
    "rocket": "Rocket on the launch pad (scikit-image)",
}


def load_sample_image(name: str) -> np.ndarray:
    """Return the RGB uint8 array of a named sample (see ``SAMPLES``)."""
    if name not in SAMPLES:
        raise InvalidInputError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    import skimage.data

    return getattr(skimage.data, name)()


def _layer(name: str):
    return [(load_sample_image(name), {"name": name, "rgb": True}, "image")]


def astronaut():
    return _layer("astronaut")


def coffee():
    return _layer("coffee")


def chelsea():
    return _layer("chelsea")


def rocket():
    return _layer("rocket")
