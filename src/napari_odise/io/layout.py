"""Where things live in a napari-odise dataset, a folder ready for fine-tuning::

    DATASET/
      manifest.json                   written last: the list of committed images + provenance
      vocabulary.json                 the dataset's categories (Vocabulary.save format)
      images/<name>.<ext>             source images, copied byte for byte (arrays: PNG)
      panoptic/<name>.png             COCO panoptic PNGs: id = R + 256 G + 256^2 B, 0 = void
      semantic/<name>.png             category index per pixel (optional per image)
      annotations/panoptic.json       COCO panoptic: images, annotations, categories
      annotations/instances.json      COCO instances, thing segments as RLE (optional per image)
      annotations/semantic_legend.json  semantic index -> category id, name, colour

``<name>`` is the image's name, unique in the dataset (case-insensitively, so that the folder
works on every file system): a file stem without folders. Every path the JSON files hold is
relative: ``file_name`` of ``images`` entries is relative to ``images/``, of panoptic
annotations to ``panoptic/``; the manifest's paths are relative to the dataset folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from napari_odise.io.errors import DatasetError

FORMAT = "napari-odise-dataset"
FORMAT_VERSION = 1
PNG = ".png"
_FORBIDDEN = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def vocabulary(self) -> Path:
        return self.root / "vocabulary.json"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def panoptic_dir(self) -> Path:
        return self.root / "panoptic"

    @property
    def semantic_dir(self) -> Path:
        return self.root / "semantic"

    @property
    def annotations_dir(self) -> Path:
        return self.root / "annotations"

    @property
    def panoptic_json(self) -> Path:
        return self.annotations_dir / "panoptic.json"

    @property
    def instances_json(self) -> Path:
        return self.annotations_dir / "instances.json"

    @property
    def semantic_legend(self) -> Path:
        return self.annotations_dir / "semantic_legend.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def data_dirs(self) -> tuple[Path, ...]:
        return (self.images_dir, self.panoptic_dir, self.semantic_dir, self.annotations_dir)

    def png_name(self, name: str) -> str:
        return name + PNG

    def relative(self, path: str | os.PathLike) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def known_entries(self) -> set[str]:
        """What may sit in the dataset folder besides hidden files."""
        return {p.name for p in (self.manifest, self.vocabulary, *self.data_dirs)}


def check_image_name(name: object) -> str:
    """An image name usable as a file stem on every system; refused with the reason if not."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"image name {name!r} is empty: give each image a name")
    if name != name.strip() or name.startswith(".") or name.endswith("."):
        raise DatasetError(
            f"image name {name!r} starts or ends with a space or a dot: remove them"
        )
    bad = _FORBIDDEN.search(name)
    if bad:
        raise DatasetError(
            f"image name {name!r} contains {bad.group()!r}: names are file stems, without "
            f"folders or characters some file systems refuse"
        )
    return name
