"""Keyboard shortcuts of the refinement panel, bound on the Labels layer it acts on.

napari ignores key bindings in plugin manifests, so they are bound in code on the layer's own
keymap (active while that layer is selected). The keys are ones napari leaves free for Labels
layers; a binding that was there before is put back when the panel lets go of the layer.
"""

from __future__ import annotations

from collections.abc import Callable

# key -> (panel method name, description); the same table drives bindings and the help text
SHORTCUTS: dict[str, tuple[str, str]] = {
    "A": ("add_current_to_selection", "add the current segment to the selection"),
    "Shift-A": ("clear_selection", "clear the selection"),
    "R": ("reassign", "reassign to the category chosen in the list"),
    "G": ("merge", "merge the selected segments"),
    "S": ("split", "split the current segment into its connected parts"),
    "D": ("delete", "delete the selected (or current) segments"),
    "H": ("fill_holes", "fill the holes of the current segment"),
    "K": ("remove_small", "remove parts smaller than N pixels"),
    "N": ("new_segment", "new segment of the chosen category, then paint it"),
    "C": ("rescore", "re-score the current segment with the model"),
}


def help_text() -> str:
    lines = [f"{key}: {description}" for key, (_, description) in SHORTCUTS.items()]
    return (
        "Shortcuts (with the Labels layer selected):\n"
        + "\n".join(lines)
        + (
            "\nShift+click in pick mode adds a segment to the selection."
            "\nCtrl+Z / Ctrl+Shift+Z undo and redo every edit."
        )
    )


class LayerKeys:
    """Binds a key table (default: :data:`SHORTCUTS`) on one layer at a time, restoring what
    the keys replaced."""

    def __init__(self, handler: Callable[[str], None], table: dict[str, tuple[str, str]] | None = None):
        self._handler = handler
        self._table = SHORTCUTS if table is None else table
        self._layer = None
        self._replaced: dict[str, object] = {}

    def bind(self, layer) -> None:
        if layer is self._layer:
            return
        self.unbind()
        self._layer = layer
        for key, (method, _) in self._table.items():
            previous = layer.bind_key(
                key, lambda _layer, method=method: self._handler(method), overwrite=True
            )
            if previous is not None:
                self._replaced[key] = previous

    def unbind(self) -> None:
        if self._layer is None:
            return
        for key in self._table:
            self._layer.bind_key(key, self._replaced.pop(key, None), overwrite=True)
        self._layer = None
