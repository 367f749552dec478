"""A batch output folder's image opened for napari (napari_odise.batch.open_stored): the picture
as the model saw it and the stored labels with the model's tensors, found through the per-image
files or the images folder; what cannot be opened is refused with the reason."""

import numpy as np
import pytest
import skimage.data
from conftest import fast_tiny
from PIL import Image

from napari_odise import Predictor, proposals
from napari_odise.batch import BatchOptions, BatchStore, run_batch
from napari_odise.batch.open_stored import open_stored_image, stored_keys, stored_model
from napari_odise.batch.store import StoreError
from napari_odise.errors import MissingFileError
from napari_odise.models import ModelSpec
from napari_odise.vocabulary import Vocabulary

VOCABULARY = Vocabulary.parse("person\ncat\ncup\ngrass (stuff)")


@pytest.fixture(scope="module")
def predictor():
    return Predictor(fast_tiny(), device="cpu")


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(skimage.data.chelsea()[::4, ::4]).save(root / "chelsea.png")
    Image.fromarray(skimage.data.camera()[::4, ::4]).save(root / "sub" / "camera.png")  # grayscale
    return root


def test_an_image_opens_with_its_labels_tensors_and_proposals(predictor, images, tmp_path):
    out = tmp_path / "out"
    run_batch(images, out, VOCABULARY, predictor, BatchOptions(recursive=True))
    assert stored_keys(out) == ["chelsea.png", "sub/camera.png"]
    assert stored_model(out, "cpu") == ModelSpec("tiny", "cpu", "fp32")
    stored = open_stored_image(out, "sub/camera.png")  # found through its segments JSON
    camera = np.asarray(Image.open(images / "sub" / "camera.png"))
    np.testing.assert_array_equal(stored.pixels, np.stack([camera] * 3, axis=-1))
    expected = BatchStore.open(out / "store.zarr").load_result("sub/camera.png", with_encoded=True)
    np.testing.assert_array_equal(stored.result.label_map, expected.label_map)
    assert stored.result.segments.equals(expected.segments) and stored.result.vocabulary == VOCABULARY
    torch_equal = (stored.result.encoded.mask_logits == expected.encoded.mask_logits).all()
    assert bool(torch_equal) and stored.path == (images / "sub" / "camera.png").resolve()
    assert (stored.result.source.name, stored.result.source.path) == ("sub/camera.png", str(stored.path))
    y, x = np.argwhere(stored.result.label_map > 0)[0]
    assert [p.query for p in proposals.proposals_at(predictor, stored.result, y, x)] == [
        p.query for p in proposals.proposals_at(predictor, expected, y, x)
    ]


def test_a_store_only_folder_needs_the_images_folder(predictor, images, tmp_path):
    out = tmp_path / "out"
    run_batch(images, out, VOCABULARY, predictor, BatchOptions(files=False))
    with pytest.raises(MissingFileError, match="give the folder of images"):
        open_stored_image(out, "chelsea.png")
    stored = open_stored_image(out, "chelsea.png", images)
    np.testing.assert_array_equal(stored.pixels, np.asarray(Image.open(images / "chelsea.png")))

    Image.fromarray(skimage.data.chelsea()[::8, ::8]).save(images / "chelsea.png")  # changed since the run
    with pytest.raises(StoreError, match="changed since the run"):
        open_stored_image(out, "chelsea.png", images)
    with pytest.raises(MissingFileError, match="no store.zarr"):
        stored_keys(images)


def test_a_store_without_tensors_offers_nothing(predictor, images, tmp_path):
    out = tmp_path / "out"
    run_batch(images, out, VOCABULARY, predictor, BatchOptions(embeddings="none"))
    assert stored_keys(out) == []
    with pytest.raises(StoreError, match="embeddings none"):
        open_stored_image(out, "chelsea.png", images)
