"""How far corrected labels are from the model's own output: panoptic quality (PQ = SQ x RQ,
Kirillov et al. 2019) for all categories, things and stuff, and per-category IoU.

It answers "how much did the person change?": the corrected labels are taken as the ground
truth and the model's output as the prediction, so PQ 1.0 means nothing was changed, and a
fine-tuned model that needs fewer corrections scores higher on the same images.

The counting follows COCO's panopticapi (``pq_compute``), so the numbers equal what that tool
gives for the exported dataset as ground truth and the model's output as prediction:

- Unlabeled pixels (id 0) are void. Segments without a category (unassigned, -1) count as void
  too, on both sides: the export leaves their pixels void as well (``skip_unassigned``).
- A corrected segment and a model segment match when their categories agree and their IoU is
  above 0.5, the union leaving out the model segment's pixels that are void in the corrected
  labels. (IoU > 0.5 makes matches unique.) A match is a true positive (TP) and adds its IoU.
- An unmatched corrected segment is a false negative (FN). An unmatched model segment is a
  false positive (FP), unless more than half of its pixels are void in the corrected labels:
  then it is ignored. So a segment the person deleted (leaving its pixels unlabeled) is not
  counted by PQ; such segments are reported beside it as ``ignored``.
- There are no crowd regions (napari-odise annotations have none).
- Per category: PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP (0 without TP),
  RQ = TP / (TP + FP/2 + FN/2). A group's (all, things, stuff) PQ/SQ/RQ is the mean over its
  categories with TP + FP + FN > 0; None when it has none (panopticapi divides by zero there).
  A category is a thing or stuff as the vocabulary says.
- Over many images (a dataset), TP, FP, FN and IoU are summed per category first and the
  means taken after, as panopticapi does, never a mean of per-image PQs.
- Per-category IoU (semantic): pixels both call c / pixels either calls c, leaving out pixels
  void in the corrected labels (model-void pixels the person labeled c count in the union).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from napari_odise.errors import InvalidInputError
from napari_odise.result import UNASSIGNED, PanopticResult

GROUPS = ("all", "things", "stuff")
MATCH_IOU = 0.5  # a match needs IoU above this (panopticapi's rule)
_LOOKUP_LIMIT = 1 << 24  # ids below this are densified through a lookup table


@dataclass(frozen=True, eq=False)
class ModelOutput:
    """The model's answer for one image (or plane), kept to measure corrections against.

    ``label_map`` is a read-only copy in the smallest unsigned type that holds its ids (a model
    gives at most a few hundred segments: one byte per pixel), ``categories`` maps its segment
    ids to category ids and ``isthing`` its category ids to the thing flag."""

    label_map: np.ndarray
    categories: Mapping[int, int]
    isthing: Mapping[int, bool]

    @classmethod
    def of(cls, result: PanopticResult) -> ModelOutput:
        segments = result.segments
        known = {c.id: c.isthing for c in result.vocabulary}
        category_ids = segments["category_id"].astype(int).tolist()
        return cls(
            _compact(result.label_map),
            dict(zip(segments["id"].astype(int).tolist(), category_ids)),
            {c: bool(known.get(c, False)) for c in category_ids if c != UNASSIGNED},
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.label_map.shape

    @property
    def nbytes(self) -> int:
        return int(self.label_map.nbytes)


def _compact(label_map: np.ndarray) -> np.ndarray:
    largest = int(np.max(label_map, initial=0))
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32) if largest <= np.iinfo(t).max)
    compact = np.array(label_map, dtype=dtype)  # a copy: the caller's map may change later
    compact.flags.writeable = False
    return compact


@dataclass
class CategoryCounts:
    """One category's counts: matches (``tp``, ``iou`` = the sum of their IoUs), ``fp``, ``fn``,
    model segments ignored as mostly void, and pixels for the semantic IoU."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0
    ignored: int = 0
    intersection: int = 0
    union: int = 0

    def __add__(self, other: CategoryCounts) -> CategoryCounts:
        return CategoryCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def counted(self) -> bool:
        """Whether PQ averages this category (panopticapi: TP + FP + FN > 0)."""
        return self.tp + self.fp + self.fn > 0

    @property
    def pq(self) -> float:
        return self.iou / self._denominator if self.counted else 0.0

    @property
    def sq(self) -> float:
        return self.iou / self.tp if self.tp else 0.0

    @property
    def rq(self) -> float:
        return self.tp / self._denominator if self.counted else 0.0

    @property
    def pixel_iou(self) -> float | None:
        return self.intersection / self.union if self.union else None

    @property
    def _denominator(self) -> float:
        return self.tp + 0.5 * self.fp + 0.5 * self.fn


@dataclass(frozen=True)
class Scores:
    """PQ, SQ, RQ of a group of categories and how many were averaged (None: none to average)."""

    pq: float | None
    sq: float | None
    rq: float | None
    n: int


@dataclass
class Quality:
    """Counts per category (see the module notes), for one image or summed over many."""

    categories: dict[int, CategoryCounts] = field(default_factory=dict)
    isthing: dict[int, bool] = field(default_factory=dict)

    def __add__(self, other: Quality) -> Quality:
        categories = dict(self.categories)
        for category, counts in other.categories.items():
            categories[category] = categories.get(category, CategoryCounts()) + counts
        return Quality(categories, {**self.isthing, **other.isthing})

    def scores(self, group: str = "all") -> Scores:
        """PQ/SQ/RQ averaged over the group's categories ("all", "things" or "stuff")."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, not {group!r}")
        chosen = [
            counts for category, counts in self.categories.items()
            if counts.counted and (group == "all" or self.isthing.get(category, False) == (group == "things"))
        ]
        if not chosen:
            return Scores(None, None, None, 0)
        n = len(chosen)
        return Scores(
            sum(c.pq for c in chosen) / n, sum(c.sq for c in chosen) / n, sum(c.rq for c in chosen) / n, n
        )

    @property
    def ignored(self) -> int:
        """Model segments left out as mostly void (e.g. deleted by the person)."""
        return sum(c.ignored for c in self.categories.values())

    @property
    def unchanged(self) -> bool:
        """True when the corrected labels are the model's output (up to ids): PQ 1.0, nothing ignored."""
        return all(c.fp == c.fn == c.ignored == 0 and c.intersection == c.union for c in self.categories.values())

    # --- JSON (the dataset manifest's ``quality`` block) -------------------------------------
    def to_json(self) -> dict:
        """The groups' scores (for people reading the manifest) and the counts per category
        (what sums over a dataset)."""
        out = {group: _scores_json(self.scores(group)) for group in GROUPS}
        out["ignored"] = self.ignored
        out["categories"] = {
            str(category): {"isthing": bool(self.isthing.get(category, False)), **_counts_json(counts)}
            for category, counts in sorted(self.categories.items())
        }
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> Quality:
        """Read :meth:`to_json`'s output back (ValueError/TypeError/KeyError when damaged)."""
        categories, isthing = {}, {}
        for key, entry in data["categories"].items():
            category = int(key)
            numbers = {f.name: entry[f.name] for f in fields(CategoryCounts)}
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers.values()):
                raise TypeError(f"category {key}: counts must be numbers")
            categories[category] = CategoryCounts(
                **{k: (float(v) if k == "iou" else int(v)) for k, v in numbers.items()}
            )
            isthing[category] = bool(entry["isthing"])
        return cls(categories, isthing)


def _scores_json(scores: Scores) -> dict:
    return {"pq": scores.pq, "sq": scores.sq, "rq": scores.rq, "n": scores.n}


def _counts_json(counts: CategoryCounts) -> dict:
    return {f.name: getattr(counts, f.name) for f in fields(counts)}


def total(qualities: Iterable[Quality]) -> Quality:
    """The sum over images (counts per category added; scores are then averaged once)."""
    out = Quality()
    for quality in qualities:
        out = out + quality
    return out


# --- comparing ---------------------------------------------------------------------------------
def compare(
    corrected_map: np.ndarray,
    corrected_categories: Mapping[int, int],
    reference: ModelOutput,
    isthing: Mapping[int, bool] | None = None,
) -> Quality:
    """The quality of ``reference`` (the model's output) against the corrected labels.

    ``corrected_categories``: segment id -> category id of the corrected map (ids it lacks, and
    -1, are void); ``isthing``: category id -> thing flag (the vocabulary's), else the model's."""
    corrected_map = np.asarray(corrected_map)
    if corrected_map.shape != reference.shape:
        raise InvalidInputError(
            f"the labels are {corrected_map.shape} but the model's output {reference.shape}: "
            f"they do not describe the same image"
        )
    things = {**reference.isthing, **(isthing or {})}
    gt_dense, gt_categories = _densify(corrected_map, corrected_categories)
    pred_dense, pred_categories = _densify(reference.label_map, reference.categories)
    width = len(pred_categories)
    pairs = np.bincount(
        (gt_dense.astype(np.int64) * width + pred_dense).ravel(), minlength=len(gt_categories) * width
    ).reshape(len(gt_categories), width)
    counts = _panoptic_counts(pairs, gt_categories, pred_categories)
    _pixel_counts(pairs, gt_categories, pred_categories, counts)
    return Quality(counts, {c: bool(things.get(c, False)) for c in counts})


def compare_results(corrected: PanopticResult, reference: ModelOutput | PanopticResult) -> Quality:
    """:func:`compare` for a result (its vocabulary says what is a thing)."""
    if isinstance(reference, PanopticResult):
        reference = ModelOutput.of(reference)
    segments = corrected.segments
    categories = dict(zip(segments["id"].astype(int).tolist(), segments["category_id"].astype(int).tolist()))
    return compare(corrected.label_map, categories, reference, {c.id: c.isthing for c in corrected.vocabulary})


def _densify(label_map: np.ndarray, categories: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(map of dense indices, category of each index): index 0 is void (unlabeled, unassigned
    or unknown ids), 1.. the segments with a category, in id order."""
    ids = np.array(sorted(i for i, c in categories.items() if i > 0 and c != UNASSIGNED), dtype=np.int64)
    category_of = np.array([-1, *(categories[i] for i in ids.tolist())], dtype=np.int64)
    largest = int(np.max(label_map, initial=0))
    if largest < _LOOKUP_LIMIT:
        lookup = np.zeros(largest + 1, dtype=np.int32)
        inside = ids[ids <= largest]
        lookup[inside] = np.searchsorted(ids, inside) + 1
        return lookup[label_map], category_of
    position = np.clip(np.searchsorted(ids, label_map), 0, max(len(ids) - 1, 0))
    found = ids[position] == label_map if len(ids) else np.zeros(label_map.shape, bool)
    return np.where(found, position + 1, 0).astype(np.int32), category_of


def _panoptic_counts(pairs: np.ndarray, gt_categories: np.ndarray, pred_categories: np.ndarray) -> dict[int, CategoryCounts]:
    counts: dict[int, CategoryCounts] = {}

    def of(category) -> CategoryCounts:
        return counts.setdefault(int(category), CategoryCounts())

    gt_area, pred_area = pairs.sum(axis=1), pairs.sum(axis=0)
    on_void = pairs[0]  # model pixels on corrected void, per model segment
    gt_index, pred_index = np.nonzero(pairs[1:, 1:])
    gt_index, pred_index = gt_index + 1, pred_index + 1
    same = gt_categories[gt_index] == pred_categories[pred_index]
    gt_index, pred_index = gt_index[same], pred_index[same]
    intersection = pairs[gt_index, pred_index]
    union = gt_area[gt_index] + pred_area[pred_index] - intersection - on_void[pred_index]
    iou = intersection / union
    matched = iou > MATCH_IOU
    gt_matched, pred_matched = set(gt_index[matched].tolist()), set(pred_index[matched].tolist())
    for g, value in zip(gt_index[matched].tolist(), iou[matched].tolist()):
        entry = of(gt_categories[g])
        entry.tp += 1
        entry.iou += value
    for g in range(1, len(gt_categories)):
        if gt_area[g] and g not in gt_matched:
            of(gt_categories[g]).fn += 1
    for p in range(1, len(pred_categories)):
        if not pred_area[p] or p in pred_matched:
            continue
        if on_void[p] / pred_area[p] > 0.5:
            of(pred_categories[p]).ignored += 1
        else:
            of(pred_categories[p]).fp += 1
    return counts


def _pixel_counts(pairs, gt_categories, pred_categories, counts: dict[int, CategoryCounts]) -> None:
    """Semantic intersection and union per category (corrected void left out)."""
    labeled = pairs[1:]  # rows of corrected segments: void rows left out
    gt_cat, pred_cat = gt_categories[1:], pred_categories
    present = set(gt_cat.tolist()) | {int(c) for c, area in zip(pred_cat[1:], labeled[:, 1:].sum(axis=0)) if area}
    for category in present:
        rows, columns = gt_cat == category, pred_cat == category
        both = int(labeled[np.ix_(rows, columns)].sum())
        either = int(labeled[rows].sum()) + int(labeled[:, columns].sum()) - both
        entry = counts.setdefault(int(category), CategoryCounts())
        entry.intersection += both
        entry.union += either


def format_table(quality: Quality, percent: bool = True) -> str:
    """PQ/SQ/RQ of all categories, things and stuff as a small text table (the Export widget
    and ``napari-odise dataset stats`` print it)."""
    scale = 100.0 if percent else 1.0
    lines = [f"{'':8}{'PQ':>7}{'SQ':>7}{'RQ':>7}{'N':>5}"]
    for group in GROUPS:
        s = quality.scores(group)
        values = "".join(f"{'-' if v is None else format(v * scale, '.1f' if percent else '.3f'):>7}" for v in (s.pq, s.sq, s.rq))
        lines.append(f"{group:8}{values}{s.n:>5}")
    return "\n".join(lines)

