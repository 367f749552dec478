"""The committed contents of a dataset, loaded for an export to change and write back.

Only images the manifest lists are loaded (see :mod:`~napari_odise.io.manifest`); entries of an
interrupted export are skipped here, which is how the next export drops them. New ids continue
after the largest *committed* ones, so an export re-run after a kill gives its images the ids an
uninterrupted run would have (the leftover entries holding them are dropped in the same commit).

Write order, which keeps every JSON pointing only at files that exist: the vocabulary (it only
grows) and data files first, then ``instances.json``, the semantic legend, ``panoptic.json`` and
the manifest last. An export that replaces images writes the same files under staged names and
commits them all at once (see :mod:`~napari_odise.io.journal`).
"""

from __future__ import annotations

from pathlib import Path

from napari_odise.atomic import atomic_write_text
from napari_odise.io.categories import coco_categories
from napari_odise.io.errors import DatasetError, damaged
from napari_odise.io.layout import FORMAT_VERSION, DatasetLayout
from napari_odise.io.manifest import build_manifest, check_record_paths, read_manifest
from napari_odise.io.semantic import legend, semantic_dtype
from napari_odise.io.stable_json import read_json, write_json
from napari_odise.vocabulary import Vocabulary, VocabularyError

DESCRIPTION = "napari-odise dataset"


class DatasetContents:
    def __init__(self, layout: DatasetLayout):
        self.layout = layout
        self.created: str | None = None
        self.vocabulary: Vocabulary | None = None
        self.supercategories: dict[int, str] = {}
        self.records: dict[str, dict] = {}  # name -> manifest record, committed images only
        self.panoptic_images: dict[int, dict] = {}
        self.panoptic_annotations: dict[int, dict] = {}
        self.instance_images: dict[int, dict] = {}
        self.instance_annotations: dict[int, list[dict]] = {}
        self.max_image_id = 0
        self.max_annotation_id = 0
        self.semantic_dtype: str | None = None

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path) -> DatasetContents:
        contents = cls(DatasetLayout(root))
        layout = contents.layout
        if root.exists() and not root.is_dir():
            raise DatasetError(f"{root} is a file; a dataset is a folder")
        if not layout.manifest.is_file():
            contents._check_fresh_folder()
            return contents
        manifest = read_manifest(layout.manifest)
        try:
            contents._load_committed(manifest)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, DatasetError):
                raise
            raise damaged(root, error, nothing_changed=True) from None
        return contents

    def _load_committed(self, manifest: dict) -> None:
        layout, root = self.layout, self.layout.root
        self.created = manifest.get("created")
        self.records = {r["name"]: r for r in manifest["images"]}
        for record in self.records.values():  # before anything is removed or overwritten
            check_record_paths(root, record)
        committed = {int(r["image_id"]) for r in self.records.values()}
        self.max_image_id = max(committed, default=0)
        self._load_vocabulary()
        self._load_panoptic(committed)
        self._load_instances(committed)
        if layout.semantic_legend.is_file():
            self.semantic_dtype = read_json(layout.semantic_legend).get("dtype")

    def _check_fresh_folder(self) -> None:
        """Without a manifest, the folder must be empty or hold only what an interrupted first
        export leaves (whose vocabulary no image uses, so it is not kept); anything else is
        someone's data we must not mix into."""
        root = self.layout.root
        if not root.is_dir():
            return
        foreign = sorted(
            p.name for p in root.iterdir()
            if not p.name.startswith(".") and p.name not in self.layout.known_entries()
        )
        if foreign:
            raise DatasetError(
                f"{root} is not empty and not a napari-odise dataset (no manifest.json; it has "
                f"{', '.join(foreign[:5])}): choose an empty or new folder"
            )

    def _load_vocabulary(self) -> None:
        path = self.layout.vocabulary
        if not path.is_file():
            if self.records:
                raise DatasetError(f"{path} is missing: the dataset is damaged")
            return
        try:
            self.vocabulary = Vocabulary.load(path)
        except VocabularyError as error:
            raise DatasetError(f"{path}: {error}") from None

    def _load_panoptic(self, committed: set[int]) -> None:
        path = self.layout.panoptic_json
        data = read_json(path) if path.is_file() else {"images": [], "annotations": [],
                                                        "categories": []}
        self.supercategories = {
            int(c["id"]): str(c["supercategory"]) for c in data["categories"]
            if "supercategory" in c
        }
        for image in data["images"]:
            if int(image["id"]) in committed:
                self.panoptic_images[int(image["id"])] = image
        for annotation in data["annotations"]:
            if int(annotation["image_id"]) in committed:
                self.panoptic_annotations[int(annotation["image_id"])] = annotation
        missing = sorted(
            committed - (self.panoptic_images.keys() & self.panoptic_annotations.keys())
        )
        if missing:
            raise DatasetError(
                f"{path} lacks images {missing[:10]} that manifest.json lists: the dataset is "
                f"damaged (was a file edited by hand?)"
            )

    def _load_instances(self, committed: set[int]) -> None:
        path = self.layout.instances_json
        if not path.is_file():
            return
        data = read_json(path)
        for image in data["images"]:
            if int(image["id"]) in committed:
                self.instance_images[int(image["id"])] = image
        for annotation in data["annotations"]:
            if int(annotation["image_id"]) in committed:
                self.max_annotation_id = max(self.max_annotation_id, int(annotation["id"]))
                self.instance_annotations.setdefault(int(annotation["image_id"]), []).append(
                    annotation
                )

    # --- changing --------------------------------------------------------------------------
    def next_image_id(self) -> int:
        self.max_image_id += 1
        return self.max_image_id

    def next_annotation_id(self) -> int:
        self.max_annotation_id += 1
        return self.max_annotation_id

    # --- writing ---------------------------------------------------------------------------
    def write_vocabulary(self) -> None:
        atomic_write_text(self.layout.vocabulary, self.vocabulary.to_json())

    def write_annotations(self, place=lambda path: path) -> None:
        """instances.json, legend, panoptic.json, manifest.json: in that order, each written at
        ``place(its path)`` (a staged name when the export commits through a journal)."""
        if self.instance_images or self.layout.instances_json.is_file():
            write_json(place(self.layout.instances_json), self._instances_document())
        semantic = any(r["semantic"] for r in self.records.values())
        if semantic or self.layout.semantic_legend.is_file():
            write_json(place(self.layout.semantic_legend), legend(self.vocabulary), indent=1)
            self.semantic_dtype = semantic_dtype(self.vocabulary)
        write_json(place(self.layout.panoptic_json), self._panoptic_document())
        self.write_manifest(place)

    def write_manifest(self, place=lambda path: path) -> None:
        instances = sum(len(a) for a in self.instance_annotations.values())
        manifest = build_manifest(
            list(self.records.values()), self.created, len(self.vocabulary or ()), instances
        )
        self.created = manifest["created"]
        write_json(place(self.layout.manifest), manifest, indent=1)

    def _header(self) -> dict:
        return {
            "info": {
                "description": DESCRIPTION,
                "format_version": FORMAT_VERSION,
                "vocabulary": self.vocabulary.name if self.vocabulary else None,
            },
            "licenses": [],
        }

    def _panoptic_document(self) -> dict:
        ids = sorted(self.panoptic_images)
        return {
            **self._header(),
            "images": [self.panoptic_images[i] for i in ids],
            "annotations": [self.panoptic_annotations[i] for i in ids],
            "categories": coco_categories(self.vocabulary or (), self.supercategories),
        }

    def _instances_document(self) -> dict:
        ids = sorted(self.instance_images)
        annotations = [a for i in ids for a in self.instance_annotations.get(i, [])]
        things = [c for c in (self.vocabulary or ()) if c.isthing]
        return {
            **self._header(),
            "images": [self.instance_images[i] for i in ids],
            "annotations": sorted(annotations, key=lambda a: a["id"]),
            "categories": coco_categories(things, self.supercategories),
        }

