"""Deterministic category colours and per-instance shades.

Categories without a colour (most presets, every user category) need colours that are distinct
from each other and from the colours already in use, and that never change between runs: a user
who learns that "cell" is teal should see teal again tomorrow. Instances of one category get
shades of the category colour, so they read as "the same kind of thing" yet stay distinguishable.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

import numpy as np

RGB = tuple[int, int, int]

_GOLDEN = 0.6180339887498949
# Roberts' R2 sequence (plastic number) spreads saturation/lightness evenly, independent of hue.
_PLASTIC = 1.324717957244746
_R2 = (1.0 / _PLASTIC, 1.0 / _PLASTIC**2)

_START_DISTANCE = 64.0  # Euclidean RGB distance the first colours keep from each other
_SHRINK = 0.8  # after too many rejections, accept colours this much closer
_PATIENCE = 64  # rejections in a row before the distance shrinks


def _candidate(index: int) -> RGB:
    """The index-th colour of an endless, even walk over vivid, mid-lightness colours."""
    hue = (0.07 + index * _GOLDEN) % 1.0
    saturation = 0.55 + 0.40 * ((0.5 + index * _R2[0]) % 1.0)
    lightness = 0.38 + 0.27 * ((0.5 + index * _R2[1]) % 1.0)
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return (round(r * 255), round(g * 255), round(b * 255))


def distinct_colors(count: int, avoid: Iterable[RGB] = ()) -> list[RGB]:
    """``count`` colours, each far from the others and from ``avoid``; same input, same output.

    Candidates come from a golden-ratio hue walk; one too close to a colour already taken is
    skipped. When the space fills up (hundreds of colours), the required distance shrinks step by
    step, so any count terminates and colours stay unique.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    avoided = np.array([tuple(c) for c in avoid], dtype=float).reshape(-1, 3)
    taken = np.empty((len(avoided) + count, 3))
    taken[: len(avoided)] = avoided
    n_taken = len(avoided)
    chosen: list[RGB] = []
    distance = _START_DISTANCE
    rejected_in_a_row = 0
    index = 0
    while len(chosen) < count:
        color = _candidate(index)
        index += 1
        if n_taken:
            nearest = np.sqrt(((taken[:n_taken] - color) ** 2).sum(axis=1)).min()
        else:
            nearest = np.inf
        if nearest >= distance and nearest > 0:
            chosen.append(color)
            taken[n_taken] = color
            n_taken += 1
            rejected_in_a_row = 0
            continue
        rejected_in_a_row += 1
        if rejected_in_a_row >= _PATIENCE:
            distance *= _SHRINK
            rejected_in_a_row = 0
    return chosen


def instance_shade(color: Iterable[int], k: int) -> RGB:
    """Shade number ``k`` of a category colour: 0 is the colour itself, then alternately lighter
    and darker in growing steps (cycling after six), so neighbouring instances differ visibly."""
    rgb = np.asarray(tuple(color), dtype=float)
    if k <= 0:
        return tuple(int(v) for v in rgb)  # type: ignore[return-value]
    step = 0.16 * (((k - 1) // 2) % 3 + 1)
    if k % 2 == 1:
        shaded = rgb + (255.0 - rgb) * step
    else:
        shaded = rgb * (1.0 - step)
    return tuple(int(round(v)) for v in np.clip(shaded, 0, 255))  # type: ignore[return-value]
