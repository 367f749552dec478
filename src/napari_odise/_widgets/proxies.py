"""The napari objects behind the public-only proxies napari hands plugin widgets.

A widget opened from the Plugins menu gets ``PublicOnlyProxy(viewer)``, and every layer reached
through it (``viewer.layers[name]``, ``selection.active``, iteration) is a NEW proxy object each
time, while event callbacks receive the real layers. Identity (``is``, ``id()``, dict keys by
``id``) then never matches, so each lookup looked like another layer: a second state per layer,
a second result layer per run. The widgets unwrap the viewer once, where they receive it, and
work with the same objects a script or a directly built widget has. The proxy's only other job is
warning about private attributes, and the plugin uses none.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def unwrap(obj: T) -> T:
    """The object behind any number of napari proxies (``obj`` itself when it is none)."""
    try:
        from napari.utils._proxies import PublicOnlyProxy  # not public API: guarded
    except ImportError:  # a napari without plugin proxies hands out the real objects
        return obj
    while isinstance(obj, PublicOnlyProxy):
        obj = obj.__wrapped__
    return obj
