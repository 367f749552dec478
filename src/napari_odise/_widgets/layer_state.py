"""A napari Labels layer kept as a panoptic segmentation: table, colours and metadata follow pixels.

Pixels are the truth and the table is derived from them. Every id ever seen in the layer has a
remembered row (category id, score, source, the area a model result gave it); the table lists the
ids present, with their pixel counts, category names from the layer's vocabulary (a category it no
longer has shows as "unassigned") and a source: "model" for a segment exactly as the model made it
(a model row, same area), otherwise "edited". These are the rules of the one layer <-> result
adapter, :mod:`napari_odise.io.layers`, whose functions derive the table, split it per plane and
read layers the plugin did not make, so what File > Save writes equals what this layer holds.

A remembered row never changes its category (only a model score is refreshed when a new result
leaves a segment's pixels and category as they were). An edit that changes a segment's category
or score gives the segment a fresh id instead, never used before in the layer. That is what lets
napari's own undo/redo, which knows only pixels, restore categories too: undoing brings the old
ids back, and with them their rows. The table is re-derived after every brush/fill/eraser/polygon
edit, every undo/redo (``set_data``), every data replacement (``data``) and every plugin edit, so
the table/map invariant of :mod:`napari_odise.result` holds at all times. (napari emits ``paint``
before writing the pixels when an edit is not grouped into a stroke, e.g. the polygon tool or
``layer.paint`` from a script; the ``labels_update`` that follows the write then syncs again.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from psygnal import Signal

from napari_odise.io.layers import (
    METADATA_KEY,
    SegmentRow,
    count_ids,
    layer_metadata,
    layer_rows,
    layer_table,
    model_outputs,
    plane_result,
    plane_table,
    results_from_labels,
    segment_colors,
    split_info,
    vocabulary_from_metadata,
)
from napari_odise.quality import ModelOutput
from napari_odise.result import PanopticResult, features_table, segments_table
from napari_odise.vocabulary import Vocabulary

from .paint_counts import count_changes, written
from .planes import PlaneKey
from .relabel import place_result

Row = SegmentRow  # what the layer remembers about one id (``area``: the pixels a model result gave it)


def rows_from_result(result: PanopticResult, ids: Mapping[int, int], label_map: np.ndarray) -> dict[int, Row]:
    """Rows for a result's segments placed under layer ids ``ids[result_id]``."""
    layer_ids, areas, _ = count_ids(label_map)
    area_of = dict(zip(layer_ids.tolist(), areas.tolist()))
    rows = {}
    for segment in result.segments.itertuples(index=False):
        if segment.id in ids:
            layer_id = ids[segment.id]
            rows[layer_id] = Row(
                int(segment.category_id), float(segment.score), "model", area_of.get(layer_id, 0),
                bool(segment.reviewed),
            )
    return rows


class SegmentationLayer:
    """The state behind one Labels layer; see the module docstring for the rules."""

    table_changed = Signal()

    def __init__(
        self,
        layer,
        vocabulary: Vocabulary,
        rows: Mapping[int, Row] = (),
        info: dict | None = None,
        image_layer=None,
        model_results: Mapping[PlaneKey, PanopticResult] | None = None,
        claimed: Mapping[PlaneKey, np.ndarray] | None = None,
    ):
        self.layer = layer
        self.vocabulary = vocabulary
        self.rows: dict[int, Row] = dict(rows)
        self.info = dict(info or {})
        self.image_layer = image_layer
        self.model_results: dict[PlaneKey, PanopticResult] = dict(model_results or {})
        # the model's own output per plane, what quality numbers compare against (io.layers)
        self.model_outputs: dict[PlaneKey, ModelOutput] = {
            **model_outputs(layer.metadata), **{k: ModelOutput.of(r) for k, r in self.model_results.items()}
        }
        self.claimed: dict[PlaneKey, np.ndarray] = dict(claimed or {})
        self.pending: set[int] = set()  # ids handed out for painting, not painted yet
        self.table = segments_table()
        self._present: set[int] = set()
        self._unlabeled = -1
        self._areas: dict[int, int] | None = None  # pixels per id > 0 at the last sync
        self._synced_vocabulary: Vocabulary | None = None
        self._colors: dict | None = None
        self._syncing = False
        self._painted = False  # a paint event came; the labels_update after the write re-syncs
        self._awaiting = None  # atoms of a paint counted before napari wrote them
        self._seen_history = None  # napari's history mark at the last count (see _history_mark)
        self._selected = layer.selected_label
        self._next_id = max([0, *self.rows, int(np.max(layer.data, initial=0))]) + 1
        for emitter in self._emitters():
            emitter.connect(self._on_pixels_changed)
        layer.events.selected_label.connect(self._on_selected_label)
        self.sync()
        self.write_metadata()

    # --- adopting layers the plugin did not make -----------------------------------------------
    @classmethod
    def adopt(cls, layer, fallback_vocabulary: Vocabulary) -> SegmentationLayer:
        """Take over any Labels layer, reading it by the io adapter's rules
        (:mod:`napari_odise.io.layers`): rows from its features table, vocabulary from its metadata,
        else the given one; ids the table does not know are unassigned."""
        vocabulary = vocabulary_from_metadata(layer.metadata, fallback_vocabulary)
        if not isinstance(layer.data, np.ndarray) or layer.data.dtype != np.int32:
            layer.data = np.asarray(layer.data).astype(np.int32)  # fresh ids must fit; numpy for edits
        ids, areas, _ = count_ids(layer.data)
        rows = layer_rows(layer.features, vocabulary, dict(zip(ids.tolist(), areas.tolist())))
        odise = layer.metadata.get(METADATA_KEY) if isinstance(layer.metadata, Mapping) else None
        info = odise.get("info") if isinstance(odise, Mapping) else None
        return cls(layer, vocabulary, rows, info=info if isinstance(info, Mapping) else None)

    # --- planes --------------------------------------------------------------------------------
    def plane(self, key: PlaneKey) -> np.ndarray:
        """The label map of one plane (a view into the layer's data)."""
        return self.layer.data[key] if key else self.layer.data

    def plane_table(self, key: PlaneKey) -> pd.DataFrame:
        """The table of the segments in one plane, with their areas in that plane."""
        return plane_table(self.plane(key), self.table)

    def result(self, key: PlaneKey = ()) -> PanopticResult:
        """One plane as a validated PanopticResult (with the model tensors and settings when the
        plane has them), split from the layer as :func:`~napari_odise.io.layers.plane_result` splits."""
        self.sync()
        made = self.model_results.get(key)
        info, source, model = split_info(self.info)
        return plane_result(
            self.layer.data, key, self.table, self.vocabulary, info=info, source=source,
            model=made.model if made is not None and made.model is not None else model,
            encoded=made.encoded if made is not None else None,
            settings=made.settings if made is not None else None,
        )

    def results(self) -> dict[PlaneKey, PanopticResult]:
        """The layer as File > Save reads it (:func:`~napari_odise.io.layers.results_from_labels`
        on its synced features and metadata): one result per segmented plane."""
        self.sync()
        return results_from_labels(self.layer.data, self.layer.features, self.layer.metadata)

    # --- ids -----------------------------------------------------------------------------------
    def allocate(self) -> int:
        """An id never used in this layer."""
        new_id = self._next_id
        self._next_id += 1
        return new_id

    def present(self, segment_id: int) -> bool:
        return segment_id in self._present

    # --- keeping the table in step with the pixels ---------------------------------------------
    def sync(self) -> bool:
        """Re-derive the table from the pixels; push features and colours when they (or the
        vocabulary) changed, and tell the followers (``table_changed``)."""
        if self._syncing:
            return False
        self._seen_history = self._history_mark()
        ids, areas, unlabeled = count_ids(self.layer.data)
        return self._sync_counts(ids, areas, unlabeled)

    def _sync_painted(self, atoms) -> bool:
        """Sync after a paint event from the values it overwrote and wrote (time proportional to
        the painted area); False when the event cannot be read so (then recount)."""
        changes = count_changes(atoms)
        if changes is None or self._areas is None or self._syncing:
            return False
        areas, unlabeled = dict(self._areas), self._unlabeled
        for label, delta in changes.items():
            if label == 0:
                unlabeled += delta
            else:
                areas[label] = areas.get(label, 0) + delta
        if unlabeled < 0 or any(v < 0 for v in areas.values()):
            return False  # the pixels changed without an event: recount
        ids = np.array(sorted(k for k, v in areas.items() if v > 0), dtype=np.int64)
        self._sync_counts(ids, np.array([areas[i] for i in ids.tolist()], dtype=np.int64), unlabeled)
        return True

    def _sync_counts(self, ids: np.ndarray, areas: np.ndarray, unlabeled: int) -> bool:
        if self._syncing:
            return False
        self._syncing = True
        try:
            self._areas = dict(zip(ids.tolist(), areas.tolist()))
            for segment_id in ids.tolist():
                self.rows.setdefault(segment_id, Row())
            self._present = set(ids.tolist())
            self.pending -= self._present
            if ids.size:
                self._next_id = max(self._next_id, int(ids[-1]) + 1)
            table = layer_table(ids, areas, self.rows, self.vocabulary)
            same_vocabulary = self.vocabulary is self._synced_vocabulary
            if table.equals(self.table) and unlabeled == self._unlabeled and same_vocabulary:
                self._update_colors()
                return False
            self.table, self._unlabeled = table, unlabeled
            self._synced_vocabulary = self.vocabulary  # followers (Refine's list, overlays) re-read it
            self.layer.features = features_table(table, unlabeled)
            self._update_colors()
        finally:
            self._syncing = False
        self.table_changed.emit()
        return True

    def _update_colors(self) -> None:
        colors = segment_colors(self.table, self.vocabulary)
        known = {c.id: c for c in self.vocabulary}
        for segment_id in self.pending:  # a new segment shows its category's colour as it is painted
            category = known.get(self.rows[segment_id].category_id)
            if category is not None:
                colors[segment_id] = (*(v / 255 for v in category.color), 1.0)
        if colors != self._colors:
            from napari.utils.colormaps import DirectLabelColormap

            self._colors = colors
            self.layer.colormap = DirectLabelColormap(color_dict=colors)

    def _emitters(self):
        events = self.layer.events
        return (events.paint, events.set_data, events.data, events.labels_update)

    def _history_mark(self):
        """(undo steps, redo steps) of napari's history: an undo or redo changes it, a mere
        refresh does not (None where napari keeps its history otherwise: then always recount)."""
        undo, redo = getattr(self.layer, "_undo_history", None), getattr(self.layer, "_redo_history", None)
        return None if undo is None or redo is None else (len(undo), len(redo))

    def _stroke_open(self) -> bool:
        """A brush stroke (or ``block_history``) is collecting edits: its paint event comes at the end."""
        return bool(getattr(self.layer, "_block_history", False))

    def _on_pixels_changed(self, event=None) -> None:
        kind = getattr(event, "type", None)
        if kind == "paint":
            ahead = written(self.layer.data, event.value) is not True
            if self._sync_painted(event.value):
                # counted from the event; followers that read pixels (names) redraw after the write
                self._awaiting = list(event.value) if ahead else None
                self._seen_history = self._history_mark()
                return
            self._painted = ahead  # recount now, and again once the pixels are written
            self.sync()
            return
        if kind in ("labels_update", "set_data") and self._stroke_open():
            return  # a refresh inside a stroke: the stroke's paint event counts it
        if self._awaiting is not None:
            atoms, self._awaiting = self._awaiting, None
            if written(self.layer.data, atoms) is True:
                self.table_changed.emit()  # the counted pixels are there now: names can be placed
                return
            self.sync()
            return
        if kind == "labels_update":
            if not self._painted:
                return  # a display refresh
            self._painted = False
        elif kind == "set_data":
            mark = self._history_mark()
            if mark is not None and mark == self._seen_history and self._areas is not None:
                return  # a refresh (slicing, colours) without an undo or redo: nothing to count
        self.sync()

    def _on_selected_label(self, event=None) -> None:
        """napari's "new label" (M) picks max id + 1, which may be an id whose row this layer still
        remembers (a deleted segment): move on to a fresh id so no old category comes back."""
        label = self.layer.selected_label
        if label == self._selected:
            return  # napari re-emits the event when the colormap changes
        self._selected = label
        if label > 0 and label in self.rows and label not in self._present and label not in self.pending:
            self.layer.selected_label = self.allocate()

    def set_reviewed(self, ids: Iterable[int], reviewed: bool = True) -> None:
        """Mark segments reviewed (or not) in their rows, then sync. Not an undo step: no pixel
        changes. An edited segment stays reviewed whatever its row says (see io.layers)."""
        for segment_id in ids:
            self.rows.setdefault(int(segment_id), Row()).reviewed = reviewed
        self.sync()

    # --- writing pixels (undoable) ---------------------------------------------------------------
    def write(self, changes: Iterable[tuple[PlaneKey, np.ndarray, np.ndarray]]) -> None:
        """Write new plane maps as ONE napari undo step (``data_setitem``), then sync."""
        with self.layer.block_history():
            for key, old_map, new_map in changes:
                index = np.nonzero(old_map != new_map)
                if index[0].size:
                    plane_index = tuple(np.full(index[0].size, k, dtype=np.intp) for k in key)
                    self.layer.data_setitem(plane_index + index, new_map[index])
        self.sync()

    def commit(
        self, key: PlaneKey, new_map: np.ndarray, new_table: pd.DataFrame, old_table: pd.DataFrame
    ) -> dict[int, int]:
        """Apply an edit of one plane (``refine``'s output) by the fresh-id rule.

        Returns {id in ``new_table``: id in the layer} for segments that got a fresh id.
        """
        before = {int(r.id): (int(r.category_id), float(r.score)) for r in old_table.itertuples(index=False)}
        fresh = {}
        for r in new_table.itertuples(index=False):
            was = before.get(int(r.id))
            if was is not None and was[0] == r.category_id and _same_score(was[1], r.score):
                continue
            fresh[int(r.id)] = self.allocate()
            self.rows[fresh[int(r.id)]] = Row(int(r.category_id), float(r.score), "edited")
        if fresh:
            lut = np.arange(max(int(new_map.max(initial=0)), max(fresh)) + 1, dtype=np.int32)
            lut[list(fresh)] = list(fresh.values())
            new_map = lut[new_map]
        self.write([(key, np.array(self.plane(key)), new_map)])
        return fresh

    # --- model results --------------------------------------------------------------------------
    def apply_results(
        self, results: Mapping[PlaneKey, PanopticResult], vocabulary: Vocabulary, info: dict | None = None
    ) -> None:
        """Place new model results (a rerun or a vocabulary change) by :mod:`.relabel`'s rule,
        as one undo step."""
        self.sync()
        self.vocabulary = vocabulary
        if info:
            self.info.update(info)
        changes = []
        was_model = set(self.table.loc[self.table["source"] == "model", "id"].tolist())
        touched = set()  # model ids in the planes replaced
        refreshed: dict[int, list[float]] = {}  # new scores of kept ids, per plane
        for key, result in results.items():
            old = np.array(self.plane(key))
            plane = self.plane_table(key)
            edited = plane.loc[plane["source"] == "edited", "id"].tolist()
            model = plane[plane["source"] == "model"]
            claimed = self.claimed.get(key, old != 0)
            placement = place_result(
                old,
                claimed,
                edited,
                dict(zip(model["id"].tolist(), model["category_id"].tolist())),
                result.label_map,
                result.segments,
                self.allocate,
            )
            new_rows = rows_from_result(
                result, {r: i for r, (i, _) in placement.ids.items()}, placement.label_map
            )
            for layer_id, row in new_rows.items():
                if layer_id in self.rows and self.rows[layer_id].source == "model":
                    # same pixels, same category: refresh the score (an id linked through a
                    # stack: the mean over its planes, as linking made it)
                    refreshed.setdefault(layer_id, []).append(row.score)
                    self.rows[layer_id].score = sum(refreshed[layer_id]) / len(refreshed[layer_id])
                else:
                    self.rows[layer_id] = row
            self.claimed[key] = placement.claimed
            touched.update(i for i in count_ids(old)[0].tolist() if i in was_model)
            self.model_outputs[key] = ModelOutput.of(result)  # the new output is the reference
            if result.encoded is not None:
                self.model_results[key] = result
            changes.append((key, old, placement.label_map))
        self.write(changes)
        # an id linked through a stack may keep its pixels in some planes and lose them to the
        # new result in others: what is left is still the model's untouched output, at its new area
        shrunk = [i for i in touched if self._areas.get(i, 0) and self.rows[i].area != self._areas[i]]
        for segment_id in shrunk:
            self.rows[segment_id].area = self._areas.get(segment_id, 0)
        if shrunk:
            self.sync()
        self.write_metadata()

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Show the same segments under another vocabulary (names by category id; ids it lacks
        become unassigned). For layers without model tensors to re-classify."""
        self.vocabulary = vocabulary
        self.sync()
        self.write_metadata()

    # --- metadata ------------------------------------------------------------------------------
    def write_metadata(self) -> None:
        """``metadata["odise"] = {"vocabulary": <Vocabulary JSON text>, "info": {...}}``, the keys
        napari_odise.io (reader, writer, export) uses too, plus ``"model_output"`` (the model's
        output per plane, the same objects each time: written per model run, not per edit)."""
        self.layer.metadata = {
            **self.layer.metadata,
            **layer_metadata(self.vocabulary, self.info, model_output=self.model_outputs),
        }

    def close(self) -> None:
        """Stop following the layer (it was removed)."""
        for emitter in self._emitters():
            emitter.disconnect(self._on_pixels_changed)
        self.layer.events.selected_label.disconnect(self._on_selected_label)


def _same_score(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def initial_labels(shape, results: Mapping[PlaneKey, PanopticResult]) -> tuple[np.ndarray, dict, dict]:
    """(data, rows, claimed) of a new Labels layer holding ``results``: ids 1.. in plane order,
    each plane's segments in the result's id order (a 2-D result keeps its own ids 1..n)."""
    data = np.zeros(shape, dtype=np.int32)
    rows: dict[int, Row] = {}
    claimed = {}
    next_id = iter(range(1, 2**31 - 1))
    for key in sorted(results):
        result = results[key]
        empty = np.zeros(result.label_map.shape, dtype=np.int32)
        placement = place_result(
            empty,
            np.zeros(empty.shape, bool),
            (),
            {},
            result.label_map,
            result.segments,
            lambda: next(next_id),
        )
        ids = {r: i for r, (i, _) in placement.ids.items()}
        rows.update(rows_from_result(result, ids, placement.label_map))
        claimed[key] = placement.claimed
        if key:
            data[key] = placement.label_map
        else:
            data[...] = placement.label_map
    return data, rows, claimed
