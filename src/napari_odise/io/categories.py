"""COCO ``categories`` entries <-> :class:`~napari_odise.vocabulary.Vocabulary`.

A COCO category carries ``id, name, supercategory, isthing, color``; we add ``synonyms`` (what
ODISE embeds) as an extra key so that a vocabulary survives the trip through a dataset's JSON
exactly. Categories are listed in vocabulary order, the order of the model's class logits and of
the semantic PNG indices, not sorted by id.

Vocabulary ids are kept as they are: COCO-133's ids run 1..200 with gaps, ADE20K's start at 0.
COCO panoptic reserves 0 for "void" only as a *segment* id in the PNGs; ``category_id`` 0 in
``segments_info`` is an ordinary dictionary key for pycocotools and panopticapi.

Supercategories are not part of a vocabulary: new categories get ``"thing"`` or ``"stuff"``
unless the result being exported knows better (``info["supercategories"]``, filled by the
readers), and a dataset keeps the ones it has.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from napari_odise.io.errors import DatasetError
from napari_odise.vocabulary import Category, Vocabulary, VocabularyError


def default_supercategory(category: Category) -> str:
    return "thing" if category.isthing else "stuff"


def coco_categories(
    vocabulary: Iterable[Category], supercategories: Mapping[int, str] | None = None
) -> list[dict]:
    """COCO category dicts, in the given order."""
    supercategories = supercategories or {}
    return [
        {
            "id": category.id,
            "name": category.name,
            "supercategory": supercategories.get(category.id, default_supercategory(category)),
            "isthing": int(category.isthing),
            "color": list(category.color),
            "synonyms": list(category.synonyms),
        }
        for category in vocabulary
    ]


def vocabulary_from_coco(
    categories: list[dict], name: str = "coco", isthing_default: bool | None = None
) -> tuple[Vocabulary, dict[int, str]]:
    """(vocabulary, supercategory by id) from COCO category dicts.

    A missing ``isthing`` takes ``isthing_default`` (instances files: True); ``None`` lets the
    vocabulary guess from COCO/ADE20K names. Missing colours are generated, missing synonyms
    mean the name.
    """
    items = []
    supercategories = {}
    for position, item in enumerate(categories):
        if not isinstance(item, dict) or "id" not in item or "name" not in item:
            raise DatasetError(f'categories[{position}] needs at least "id" and "name"')
        isthing = item.get("isthing", isthing_default)
        items.append(
            {
                "id": item["id"],
                "name": item["name"],
                "synonyms": item.get("synonyms") or [item["name"]],
                "isthing": None if isthing is None else bool(isthing),
                "color": item.get("color"),
            }
        )
        if "supercategory" in item:
            supercategories[int(item["id"])] = str(item["supercategory"])
    try:
        vocabulary = Vocabulary.from_json(json.dumps({"name": name, "categories": items}))
    except VocabularyError as error:
        raise DatasetError(f"the categories cannot form a vocabulary: {error}") from None
    return vocabulary, supercategories


def merge_vocabulary(dataset: Vocabulary | None, incoming: Vocabulary) -> Vocabulary:
    """The dataset's vocabulary grown by the categories of ``incoming`` it lacks.

    Compatible means: an id present in both has the same name and thing flag (synonyms and
    colours may differ; the dataset keeps its own), and a new id does not reuse a name the
    dataset gives another id. New categories go at the end, so existing semantic indices stay.
    """
    if dataset is None:
        return incoming
    known = {c.id: c for c in dataset}
    ids_by_name = {c.name.lower(): c.id for c in dataset}
    added = []
    conflicts = []
    for category in incoming:
        existing = known.get(category.id)
        if existing is not None:
            if existing.name != category.name or existing.isthing != category.isthing:
                conflicts.append(
                    f"id {category.id} is {_describe(existing)} in the dataset but "
                    f"{_describe(category)} here"
                )
            continue
        other = ids_by_name.get(category.name.lower())
        if other is not None:
            conflicts.append(
                f"{category.name!r} has id {category.id} here but id {other} in the dataset"
            )
            continue
        added.append(category)
    if conflicts:
        raise DatasetError(
            "the vocabulary does not match the dataset's (same id must mean same category): "
            + "; ".join(conflicts[:5])
            + (f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
            + ". Export into a new dataset, or map the categories to the dataset's ids first."
        )
    if not added:
        return dataset
    return Vocabulary((*dataset, *added), name=dataset.name)


def _describe(category: Category) -> str:
    return f"{category.name!r} ({'thing' if category.isthing else 'stuff'})"
