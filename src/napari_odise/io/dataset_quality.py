"""A dataset's quality numbers: the manifest's per-image ``quality`` blocks summed (counts per
category added, then averaged once; :mod:`napari_odise.quality`), for ``napari-odise dataset
stats`` and scripts comparing datasets corrected before and after fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

from napari_odise.io.errors import damaged
from napari_odise.quality import GROUPS, Quality, format_table, total
from napari_odise.vocabulary import Vocabulary


@dataclass(frozen=True)
class DatasetQuality:
    """The summed quality, and which images had a block to sum (``compared``) or not."""

    quality: Quality
    compared: tuple[str, ...]
    not_compared: tuple[str, ...]

    def to_json(self, vocabulary: Vocabulary | None = None) -> dict:
        names = {c.id: c.name for c in vocabulary} if vocabulary is not None else {}
        data = self.quality.to_json()
        for key, entry in data["categories"].items():
            counts = self.quality.categories[int(key)]
            entry.update(name=names.get(int(key)), pq=counts.pq, sq=counts.sq, rq=counts.rq, pixel_iou=counts.pixel_iou)
        return {
            "images": len(self.compared) + len(self.not_compared),
            "compared": len(self.compared),
            "not_compared": list(self.not_compared),
            **data,
        }

    def text(self, vocabulary: Vocabulary | None = None, title: str = "dataset") -> str:
        """The groups' table and one line per category, percentages as panopticapi prints them."""
        lines = [
            f"{title}: {len(self.compared)} of {len(self.compared) + len(self.not_compared)} images "
            f"compared with the model's output (100 = nothing changed)"
        ]
        if self.not_compared:
            shown = ", ".join(self.not_compared[:5]) + (", ..." if len(self.not_compared) > 5 else "")
            lines.append(f"without the model's output (not counted): {shown}")
        if not self.compared:
            return "\n".join(lines)
        lines += ["", format_table(self.quality), ""]
        if self.quality.ignored:
            lines.append(f"{self.quality.ignored} model segments left out as mostly unlabeled (deleted)")
        names = {c.id: c.name for c in vocabulary} if vocabulary is not None else {}
        lines.append(f"{'category':24}{'kind':>7}{'PQ':>7}{'SQ':>7}{'RQ':>7}{'TP':>6}{'FP':>6}{'FN':>6}{'IoU':>7}")
        for category, counts in sorted(self.quality.categories.items()):
            kind = "thing" if self.quality.isthing.get(category) else "stuff"
            iou = "-" if counts.pixel_iou is None else f"{100 * counts.pixel_iou:.1f}"
            name = f"{category} {names.get(category, '?')}"[:23]
            lines.append(
                f"{name:24}{kind:>7}{100 * counts.pq:>7.1f}{100 * counts.sq:>7.1f}{100 * counts.rq:>7.1f}"
                f"{counts.tp:>6}{counts.fp:>6}{counts.fn:>6}{iou:>7}"
            )
        return "\n".join(lines)


def dataset_quality(dataset) -> DatasetQuality:
    """Sum the quality blocks of an opened dataset's images (:func:`~.dataset.open_dataset`);
    a block that cannot be read makes the dataset damaged (:class:`DatasetError`)."""
    qualities, compared, not_compared = [], [], []
    for record in sorted(dataset.manifest["images"], key=lambda r: r["image_id"]):
        block = record.get("quality")
        if block is None:
            not_compared.append(record["name"])
            continue
        try:
            qualities.append(Quality.from_json(block))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise damaged(dataset.root, error) from None
        compared.append(record["name"])
    return DatasetQuality(total(qualities), tuple(compared), tuple(not_compared))


__all__ = ["GROUPS", "DatasetQuality", "dataset_quality"]
