"""Batch segmentation of image folders: resumable, shardable, on one process or a Dask cluster.

    from napari_odise.batch import BatchOptions, run_batch, relabel_store, merge_outputs

    summary = run_batch("photos/", "out/", Vocabulary.preset("coco"), model="official",
                        options=BatchOptions(recursive=True, coco=True))
    relabel_store("out/store.zarr", Vocabulary.preset("ade20k"))     # no backbone
    merge_outputs(["out-0", "out-1"], "out-all")                     # after --shard 0/2, 1/2

Modules: discovery (which files, shards), reading (files and TIFF pages -> arrays), store (zarr
layout), publish (atomic groups), files (per-image PNG/JSON/overlay), coco (dataset output),
job (one image), runner (the run), distributed (Dask), relabel, merge, progress, summary,
open_stored (one stored image back as pixels + result with tensors, for napari).
docs/batch.md describes the outputs and the guarantees.
"""

from importlib import import_module

# Public names -> their modules, imported on first use so that ``import napari_odise.batch``
# (and the CLI's --help) does not load PyTorch.
_LAZY = {
    "BatchCancelled": "job",
    "BatchOptions": "runner",
    "BatchProgress": "progress",
    "BatchStore": "store",
    "BatchSummary": "summary",
    "DiscoveryError": "discovery",
    "Failure": "summary",
    "ImageFile": "discovery",
    "ImageReadError": "reading",
    "Item": "reading",
    "MergeError": "merge",
    "MergeSummary": "merge",
    "ModelSpec": "models",
    "StoreError": "store",
    "TerminalProgress": "progress",
    "discover": "discovery",
    "expand": "reading",
    "load_vocabulary": "vocabularies",
    "merge_outputs": "merge",
    "open_stored_image": "open_stored",
    "parse_shard": "discovery",
    "read_item": "reading",
    "relabel_store": "relabel",
    "run_batch": "runner",
    "select_shard": "discovery",
    "stored_keys": "open_stored",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f"napari_odise.batch.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'napari_odise.batch' has no attribute {name!r}")
