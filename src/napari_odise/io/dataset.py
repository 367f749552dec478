"""Reading a napari-odise dataset: its images, vocabulary, results and what it adds up to.

:func:`open_dataset` trusts the manifest (the commit record) and reports, without failing, what
does not add up: missing files (``missing_files``, also in ``problems``) and leftovers of an
interrupted export (annotation entries or files no committed image uses, temporary files).
Leftovers are harmless: readers skip them, and the next export drops the entries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from napari_odise.atomic import TEMP_SUFFIX
from napari_odise.io import journal
from napari_odise.io.coco_panoptic import PanopticReader
from napari_odise.io.errors import DatasetError, damaged
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.lock import DatasetBusyError, dataset_lock
from napari_odise.io.manifest import check_record_paths, read_manifest, record_path
from napari_odise.io.stable_json import read_json
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary, VocabularyError


@dataclass(frozen=True)
class ImageRecord:
    """One committed image, as the manifest describes it (paths absolute)."""

    name: str
    image_id: int
    file_name: str
    image: Path | None
    panoptic: Path
    semantic: Path | None
    instances: bool
    height: int
    width: int
    segments: int
    edited: int
    source_image: str | None
    model: str | None
    exported: str

    @classmethod
    def from_manifest(cls, record: dict, root: Path) -> ImageRecord:
        check_record_paths(root, record)
        return cls(
            name=record["name"], image_id=int(record["image_id"]),
            file_name=record["file_name"], image=record_path(root, record, "image"),
            panoptic=record_path(root, record, "panoptic"),
            semantic=record_path(root, record, "semantic"),
            instances=bool(record["instances"]), height=int(record["height"]),
            width=int(record["width"]), segments=int(record["segments"]),
            edited=int(record["edited"]), source_image=record.get("source_image"),
            model=record.get("model"), exported=record.get("exported", ""),
        )


class Dataset:
    """A dataset folder opened for reading (see :mod:`~napari_odise.io.layout`)."""

    def __init__(self, root: Path, manifest: dict, vocabulary: Vocabulary):
        self.root = root
        self.layout = DatasetLayout(root)
        self.manifest = manifest
        self.vocabulary = vocabulary
        self.images = tuple(
            sorted((ImageRecord.from_manifest(r, root) for r in manifest["images"]),
                   key=lambda r: r.image_id)
        )
        self._by_name = {r.name: r for r in self.images}
        self._reader: PanopticReader | None = None
        self._listed_ids = {  # image ids each annotation file lists
            path: {int(i["id"]) for i in read_json(path)["images"]}
            for path in (self.layout.panoptic_json, self.layout.instances_json)
            if path.is_file()
        }
        self.missing_files = tuple(self._find_missing_files())
        self.problems = self.missing_files + tuple(self._find_leftovers())

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, {len(self)} images)"

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.images]

    def image(self, name: str) -> ImageRecord:
        try:
            return self._by_name[name]
        except KeyError:
            raise DatasetError(f"no image named {name!r} in {self.root}") from None

    def read(self, name: str) -> PanopticResult:
        """The image's annotations as a result (``info`` as :func:`read_panoptic` fills it)."""
        reader = self._panoptic_reader()
        return reader.read(reader.image_by_id(self.image(name).image_id))

    def results(self) -> Iterator[PanopticResult]:
        for record in self.images:
            yield self.read(record.name)

    def summary(self) -> dict:
        """Counts for people: images, segments, how many a person edited, and so on."""
        segments = sum(r.segments for r in self.images)
        edited = sum(r.edited for r in self.images)
        return {
            "images": len(self.images),
            "segments": segments,
            "edited": edited,
            "model": segments - edited,
            "edited_share": edited / segments if segments else 0.0,
            "images_with_edits": sum(1 for r in self.images if r.edited),
            "instances": int(self.manifest.get("counts", {}).get("instances", 0)),
            "categories": len(self.vocabulary),
            "images_without_file": sum(1 for r in self.images if r.image is None),
            "problems": len(self.problems),
        }

    def _panoptic_reader(self) -> PanopticReader:
        if self._reader is None:
            self._reader = PanopticReader(self.layout.panoptic_json)
        return self._reader

    def _find_missing_files(self) -> Iterator[str]:
        for record in self.images:
            for kind, path in (("image", record.image), ("panoptic PNG", record.panoptic),
                               ("semantic PNG", record.semantic)):
                if path is not None and not path.is_file():
                    yield f"{record.name}: {kind} {self.layout.relative(path)} is missing"
        committed = {r.image_id for r in self.images}
        if self.images and not self.layout.panoptic_json.is_file():
            yield "annotations/panoptic.json is missing"
        elif self.images:
            listed = self._listed_ids[self.layout.panoptic_json]
            if committed - listed:
                yield (f"annotations/panoptic.json lacks image ids "
                       f"{sorted(committed - listed)[:10]}")

    def _find_leftovers(self) -> Iterator[str]:
        """What an interrupted export left. Harmless: the next export drops the entries and the
        temporary files; leftover data files stay until an export of that name replaces them
        (nothing deletes files in these folders that no record names, in case they matter)."""
        layout = self.layout
        committed = {r.image_id for r in self.images}
        for json_path, listed in self._listed_ids.items():
            if listed - committed:
                yield (f"{layout.relative(json_path)}: leftover entries for image ids "
                       f"{sorted(listed - committed)[:10]} (an interrupted export)")
        referenced = {p for r in self.images for p in (r.image, r.panoptic, r.semantic) if p}
        for folder in (layout.images_dir, layout.panoptic_dir, layout.semantic_dir):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX):
                    yield f"leftover temporary file {layout.relative(path)}"
                elif path not in referenced:
                    yield f"leftover file {layout.relative(path)} (no image uses it)"


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dataset folder for reading; :class:`DatasetError` if it is not one."""
    root = Path(path)
    layout = DatasetLayout(root)
    if not layout.manifest.is_file():
        hint = ""
        if layout.panoptic_json.is_file() or root.suffix == ".json":
            hint = (" For a plain COCO panoptic file use read_panoptic, or convert it with "
                    "`napari-odise export --panoptic-json FILE --out DATASET`.")
        raise DatasetError(f"{root} is not a napari-odise dataset (no manifest.json).{hint}")
    if journal.pending(root):
        _finish_replacement(layout)
    manifest = read_manifest(layout.manifest)
    try:
        vocabulary = Vocabulary.load(layout.vocabulary)
    except FileNotFoundError:
        raise DatasetError(f"{layout.vocabulary} is missing: the dataset is damaged") from None
    except VocabularyError as error:
        raise DatasetError(f"{layout.vocabulary}: {error}") from None
    try:
        return Dataset(root, manifest, vocabulary)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, DatasetError):
            raise
        raise damaged(root, error) from None


def _finish_replacement(layout: DatasetLayout) -> None:
    """A replacement was committed but not carried out (a killed export): finish it before
    reading, so the reader sees the new images whole, never a mix."""
    try:
        with dataset_lock(layout.lock):
            journal.roll_forward(layout.root)
    except DatasetBusyError:
        raise DatasetError(
            f"an export is replacing images in {layout.root} right now: open it again when it "
            f"has finished"
        ) from None
    except OSError as error:
        raise DatasetError(
            f"{layout.root}: an export that replaced images was interrupted, and finishing it "
            f"failed ({error.strerror or error}); open the dataset once where it is writable"
        ) from None
