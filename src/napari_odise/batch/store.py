"""The batch's zarr store: per image, the model's cached tensors and its labels.

Layout (zarr format 2, a folder on a local or shared file system)::

    store.zarr/                       attrs["napari_odise_batch"]: format, model, precision,
                                      encode_settings, embeddings dtype, labels (current labelset id)
      images/<safe name>/             attrs: key, file_key, page, height, width, geometry,
                                      logit_scale, clip_logit_scale, complete
        mask_logits   (Q, h, w)       mask logits at 1/4 of the padded model input
        mask_embed    (Q, D)          ODISE's open-vocabulary query embeddings
        clip_mask_embed (Q, C)        MaskCLIP embeddings
        class_logits  (Q, 2)          caption model only
      labels/<labelset id>/           attrs: vocabulary (JSON), classify_settings
        <safe name>/                  attrs: key, segments (rows of the segments table), complete
          label_map   (H, W) int32

A labelset is one vocabulary plus the classification settings; its id is a hash of both. The
root's ``labels`` names the current one, so re-labelling writes a new labelset next to the old
and switches with one atomic attribute write: readers never see a mix of vocabularies.

Every group at its final name is complete (see :mod:`.publish`); ``complete`` in its attributes,
written last, is checked as well.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from napari_odise.batch import zarr_compat
from napari_odise.batch.publish import clear_partials, new_partial_folder, publish, remove_folder
from napari_odise.errors import UserError
from napari_odise.io.stable_json import dumps as stable_dumps
from napari_odise.model.odise import EncodedImage
from napari_odise.model.postprocess import MaskGeometry
from napari_odise.model.settings import InferenceSettings
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

STORE_FORMAT = 1
HEADER_KEY = "napari_odise_batch"
EMBEDDING_DTYPES = ("float32", "float16", "none")
# Settings that change what encode() computes, and those that change only classify() + merge.
_TENSORS = ("mask_logits", "mask_embed", "clip_mask_embed", "class_logits")
_LABEL_CHUNK = 2048
_CHUNK_BYTES = 64 * 2**20


class StoreError(UserError, ValueError):
    """The store is missing, of another kind, or incompatible with what was asked."""


def safe_name(key: str) -> str:
    """A folder name for any key: readable part + hash (unique, no separators, not hidden)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:80] or "image"
    return f"{readable}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}"


def labelset_id(vocabulary: Vocabulary, settings: InferenceSettings) -> str:
    """Hash of the categories (not the vocabulary's display name, which equality ignores too)
    and the classification settings."""
    categories = [c.to_dict() for c in vocabulary]
    text = stable_dumps(categories) + stable_dumps(settings.classify_part())
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def header_differences(expected: dict, found: dict) -> list[str]:
    """What makes two stores' (or a store's and a run's) results not comparable."""
    return [
        f"{name}: {found.get(name)!r} here, {expected.get(name)!r} asked for"
        for name in ("format", "model", "precision", "encode_settings", "embeddings", "labels")
        if found.get(name) != expected.get(name)
    ]


def storage_roundtrip(encoded: EncodedImage, embeddings: str) -> EncodedImage:
    """The tensors as the store will give them back (float16 rounding), so labels computed now
    equal labels computed later from the store."""
    if embeddings != "float16":
        return encoded

    def rounded(tensor):
        return None if tensor is None else tensor.to(torch.float16).to(torch.float32)

    return dataclasses.replace(
        encoded,
        mask_logits=rounded(encoded.mask_logits),
        mask_embed=rounded(encoded.mask_embed),
        clip_mask_embed=rounded(encoded.clip_mask_embed),
        class_logits=rounded(encoded.class_logits),
    )


def segment_rows(result: PanopticResult) -> list[dict]:
    """The segments table as JSON-able rows (scores as exact Python floats, query ids kept)."""
    rows = []
    for row in result.segments.to_dict("records"):
        score = float(row["score"])
        rows.append(
            {
                "id": int(row["id"]),
                "category_id": int(row["category_id"]),
                "category": str(row["category"]),
                "isthing": bool(row["isthing"]),
                "score": None if np.isnan(score) else score,
                "area": int(row["area"]),
                "query_ids": list(result.query_ids.get(int(row["id"]), [])),
            }
        )
    return rows


def _attrs(folder: Path) -> dict:
    """A group's attributes; read straight from its ``.zattrs`` (format 2, what we write): resume
    checks every image, and opening each group through zarr would cost milliseconds apiece."""
    attrs_file = folder / ".zattrs"
    if attrs_file.is_file():
        return json.loads(attrs_file.read_text(encoding="utf-8"))
    return zarr_compat.read_attrs(zarr_compat.open_group(folder))


def _is_complete(folder: Path) -> bool:
    try:
        return bool(_attrs(folder).get("complete"))
    except Exception:  # noqa: BLE001 - anything unreadable is simply not complete
        return False


class BatchStore:
    """One store folder. Many processes may write different images into it at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        root = zarr_compat.open_group(self.path)
        attrs = zarr_compat.read_attrs(root)
        if HEADER_KEY not in attrs:
            raise StoreError(f"{self.path} is a zarr store but not a napari-odise batch store")
        self.header: dict = attrs[HEADER_KEY]
        if self.header.get("format") != STORE_FORMAT:
            raise StoreError(
                f"{self.path} has store format {self.header.get('format')}; this version reads {STORE_FORMAT}"
            )
        self._labelsets: dict[str, tuple[Vocabulary, dict]] = {}

    # -- creating and opening -------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> BatchStore:
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"no store at {path}")
        return cls(path)

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike, header: dict, vocabulary: Vocabulary, settings: InferenceSettings
    ) -> BatchStore:
        """The store at ``path``, created if missing; refused if it holds other results."""
        path = Path(path)
        header = {**header, "format": STORE_FORMAT}
        if not path.exists():
            folder = new_partial_folder(path)
            zarr_compat.create_group(folder, {HEADER_KEY: header})
            zarr_compat.create_group(folder / "images")
            zarr_compat.create_group(folder / "labels")
            publish(folder, path, lambda p: (p / ".zgroup").exists() or (p / "zarr.json").exists())
        store = cls.open(path)
        differences = header_differences(header, store.header)
        if differences:
            raise StoreError(
                f"{path} holds results made differently ({'; '.join(differences)}). Use another output "
                "folder, or `napari-odise relabel` to change the store's vocabulary first."
            )
        store.ensure_labelset(header["labels"], vocabulary, settings)
        return store

    def clear_partials(self) -> int:
        """Remove groups a killed writer left unfinished (call before any writer starts)."""
        return clear_partials(self.path)

    # -- labelsets ------------------------------------------------------------------------------
    @property
    def labels(self) -> str:
        return self.header["labels"]

    def _labelset_path(self, labels: str) -> Path:
        return self.path / "labels" / labels

    def ensure_labelset(self, labels: str, vocabulary: Vocabulary, settings: InferenceSettings) -> None:
        folder = self._labelset_path(labels)
        if folder.exists():
            return
        partial = new_partial_folder(self.path)
        zarr_compat.create_group(
            partial,
            {"vocabulary": json.loads(vocabulary.to_json()), "classify_settings": settings.classify_part(), "complete": True},
        )
        publish(partial, folder, _is_complete)

    def labelset(self, labels: str | None = None) -> tuple[Vocabulary, InferenceSettings]:
        """(vocabulary, settings) of a labelset (default: the current one): its classification
        settings with the store's resolution options."""
        labels = labels or self.labels
        if labels not in self._labelsets:
            folder = self._labelset_path(labels)
            if not folder.exists():
                raise StoreError(f"{self.path} has no labelset {labels}")
            attrs = zarr_compat.read_attrs(zarr_compat.open_group(folder))
            self._labelsets[labels] = (
                Vocabulary.from_json(json.dumps(attrs["vocabulary"])),
                self.encode_settings.replace(**attrs["classify_settings"]),
            )
        return self._labelsets[labels]

    @property
    def vocabulary(self) -> Vocabulary:
        return self.labelset()[0]

    @property
    def encode_settings(self) -> InferenceSettings:
        """The settings the store's tensors were encoded with (its resolution options)."""
        return InferenceSettings.from_dict(self.header["encode_settings"])

    def labelset_ids(self) -> list[str]:
        folder = self.path / "labels"
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def switch_labels(self, labels: str) -> None:
        """Make ``labels`` current: one atomic write of the root's attributes."""
        self.labelset(labels)  # must exist
        root = zarr_compat.open_group(self.path, mode="r+")
        self.header = {**self.header, "labels": labels}
        zarr_compat.update_attrs(root, {HEADER_KEY: self.header})

    def drop_labelsets(self, keep: str) -> list[str]:
        dropped = [labels for labels in self.labelset_ids() if labels != keep]
        for labels in dropped:
            remove_folder(self._labelset_path(labels), self.path)
            self._labelsets.pop(labels, None)
        return dropped

    # -- images ---------------------------------------------------------------------------------
    def _image_path(self, key: str) -> Path:
        return self.path / "images" / safe_name(key)

    def _labels_path(self, key: str, labels: str | None) -> Path:
        return self._labelset_path(labels or self.labels) / safe_name(key)

    def has_image(self, key: str) -> bool:
        return _is_complete(self._image_path(key))

    def has_labels(self, key: str, labels: str | None = None) -> bool:
        return _is_complete(self._labels_path(key, labels))

    def has_embeddings(self, key: str) -> bool:
        return self.header["embeddings"] != "none" and self.has_image(key)

    def keys(self) -> list[str]:
        """Keys of the complete images, sorted."""
        keys = []
        for folder in (self.path / "images").iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                attrs = _attrs(folder)
            except Exception:  # noqa: BLE001 - an unreadable group is not a complete image
                continue
            if attrs.get("complete"):
                keys.append(attrs["key"])
        return sorted(keys)

    def write_image(self, key: str, file_key: str, page: int, shape: tuple[int, int], encoded: EncodedImage) -> bool:
        """Store an image's tensors (unless the store keeps none) and facts; False if already there."""
        embeddings = self.header["embeddings"]
        folder = new_partial_folder(self.path)
        group = zarr_compat.create_group(folder)
        if embeddings != "none":
            for name in _TENSORS:
                tensor = getattr(encoded, name)
                if tensor is not None:
                    array = tensor.numpy().astype(embeddings)
                    zarr_compat.write_array(group, name, array, _tensor_chunks(array.shape, array.itemsize))
        geometry = encoded.geometry
        zarr_compat.update_attrs(
            group,
            {
                "key": key,
                "file_key": file_key,
                "page": int(page),
                "height": int(shape[0]),
                "width": int(shape[1]),
                "geometry": {
                    "padded_size": list(geometry.padded_size),
                    "input_size": list(geometry.input_size),
                    "output_size": list(geometry.output_size),
                },
                "logit_scale": float(encoded.logit_scale),
                "clip_logit_scale": float(encoded.clip_logit_scale),
            },
        )
        zarr_compat.update_attrs(group, {"complete": True})  # the marker, written last
        return publish(folder, self._image_path(key), _is_complete)

    def write_labels(self, key: str, result: PanopticResult, labels: str | None = None) -> bool:
        folder = new_partial_folder(self.path)
        group = zarr_compat.create_group(folder)
        label_map = result.label_map
        chunks = tuple(min(_LABEL_CHUNK, max(1, s)) for s in label_map.shape)
        zarr_compat.write_array(group, "label_map", label_map.astype(np.int32), chunks)
        zarr_compat.update_attrs(group, {"key": key, "segments": segment_rows(result)})
        zarr_compat.update_attrs(group, {"complete": True})
        return publish(folder, self._labels_path(key, labels), _is_complete)

    def image_attrs(self, key: str) -> dict:
        folder = self._image_path(key)
        if not _is_complete(folder):
            raise StoreError(f"{self.path} has no complete image {key!r}")
        return _attrs(folder)

    def load_encoded(self, key: str) -> EncodedImage:
        """The image's cached tensors as float32 (what re-labelling needs, without the backbone)."""
        if self.header["embeddings"] == "none":
            raise StoreError(
                f"{self.path} was written with --embeddings none: it cannot re-label; run segment again"
            )
        folder = self._image_path(key)
        attrs = self.image_attrs(key)
        group = zarr_compat.open_group(folder)
        tensors = {
            name: torch.from_numpy(zarr_compat.read_array(group, name).astype(np.float32))
            for name in _TENSORS
            if name in group
        }
        geometry = attrs["geometry"]
        return EncodedImage(
            mask_logits=tensors["mask_logits"],
            mask_embed=tensors["mask_embed"],
            clip_mask_embed=tensors["clip_mask_embed"],
            logit_scale=float(attrs["logit_scale"]),
            clip_logit_scale=float(attrs["clip_logit_scale"]),
            class_logits=tensors.get("class_logits"),
            geometry=MaskGeometry(
                padded_size=tuple(geometry["padded_size"]),
                input_size=tuple(geometry["input_size"]),
                output_size=tuple(geometry["output_size"]),
            ),
            settings=self.encode_settings,
        )

    def load_labels(self, key: str, labels: str | None = None) -> tuple[np.ndarray, list[dict]]:
        folder = self._labels_path(key, labels)
        if not _is_complete(folder):
            raise StoreError(f"{self.path} has no labels for {key!r}")
        group = zarr_compat.open_group(folder)
        return zarr_compat.read_array(group, "label_map"), zarr_compat.read_attrs(group)["segments"]

    def load_result(self, key: str, labels: str | None = None, with_encoded: bool = False) -> PanopticResult:
        """The image's PanopticResult under a labelset (default: current)."""
        label_map, rows = self.load_labels(key, labels)
        vocabulary, settings = self.labelset(labels)
        encoded = self.load_encoded(key) if with_encoded else None
        return PanopticResult.from_segments_info(
            label_map,
            [{**row, "score": np.nan if row["score"] is None else row["score"]} for row in rows],
            vocabulary,
            encoded=encoded,
            info={"key": key},
            settings=settings,
            model=self.header["model"],
        )

    # -- copying between stores (merge) ---------------------------------------------------------
    def copy_image_from(self, other: BatchStore, key: str) -> bool:
        """Copy one image (tensors + current labels) from another store; False if already here."""
        copied = False
        if not self.has_image(key):
            folder = new_partial_folder(self.path)
            shutil.rmtree(folder)
            shutil.copytree(other._image_path(key), folder)
            copied = publish(folder, self._image_path(key), _is_complete)
        if not self.has_labels(key):
            folder = new_partial_folder(self.path)
            shutil.rmtree(folder)
            shutil.copytree(other._labels_path(key, None), folder)
            copied = publish(folder, self._labels_path(key, None), _is_complete) or copied
        return copied


def _tensor_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Few files per image: whole arrays, split along the queries only past _CHUNK_BYTES."""
    per_query = max(1, int(np.prod(shape[1:])) * itemsize)
    return (max(1, min(shape[0], _CHUNK_BYTES // per_query)), *shape[1:])
