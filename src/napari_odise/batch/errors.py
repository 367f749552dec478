"""Errors that mean "this cannot run as asked" (not bugs): front ends show their message only."""

from __future__ import annotations


def user_errors() -> tuple[type[BaseException], ...]:
    from napari_odise.batch.discovery import DiscoveryError
    from napari_odise.batch.lock import FolderBusyError
    from napari_odise.batch.manifest import OutputFolderError
    from napari_odise.batch.merge import MergeError
    from napari_odise.batch.store import StoreError
    from napari_odise.io.errors import DatasetError
    from napari_odise.vocabulary import VocabularyError
    from napari_odise.weights.errors import WeightsError

    return (
        DiscoveryError, StoreError, MergeError, OutputFolderError, FolderBusyError, VocabularyError,
        DatasetError, WeightsError, ValueError, FileNotFoundError,
    )
