"""The napari reader and writer: COCO JSON -> layers -> dataset, as a person would use them."""

from __future__ import annotations

import npe2
import numpy as np
import pytest
from test_io_samples import (
    LITERAL_MAP,
    dataset_files,
    literal_result,
    load_json,
    random_image,
    random_result,
    save_jpeg,
)

from napari_odise._reader import get_reader
from napari_odise._writer import SaveError, write_dataset
from napari_odise.io import export_result, open_dataset
from napari_odise.io.layers import labels_layer_data, result_from_labels

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def viewer():
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()
    return ViewerModel()


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    first = literal_result(info={"model": "odise_label_coco_50e"})
    export_result(first, root, image=save_jpeg(tmp_path / "photo.jpg", LITERAL_MAP.shape))
    second = random_result(seed=11)
    export_result(second, root, image=random_image(second.label_map.shape), image_name="rand")
    return root, {"photo": first, "rand": second}


def test_open_panoptic_json_gives_image_and_labels_layers_with_features(viewer, dataset):
    root, results = dataset
    viewer.open(str(root / "annotations" / "panoptic.json"), plugin="napari-odise")
    assert [(layer.name, type(layer).__name__) for layer in viewer.layers] == [
        ("photo", "Image"), ("photo panoptic", "Labels"), ("rand", "Image"),
        ("rand panoptic", "Labels"),
    ]
    assert viewer.layers["photo"].data.shape == (6, 8, 3) and viewer.layers["photo"].rgb
    for name, result in results.items():
        labels = viewer.layers[f"{name} panoptic"]
        np.testing.assert_array_equal(labels.data, result.label_map)
        features = labels.features
        assert features["index"].tolist() == [0, *result.segments["id"].tolist()]
        table = result.segments.set_index("id")
        for row in features.iloc[1:].itertuples():
            assert row.category == table.loc[row.index, "category"]
            assert row.source == table.loc[row.index, "source"]
        assert type(labels.colormap).__name__ == "DirectLabelColormap"
        for segment_id, rgba in result.colors().items():
            if segment_id is not None:
                np.testing.assert_allclose(labels.colormap.color_dict[segment_id], rgba,
                                           atol=1e-6)
    status = viewer.layers["photo panoptic"].get_status((0, 0), world=True)
    assert "category: person" in status["value"] and "score: 0.91" in status["value"]


def test_open_and_save_through_napari_is_lossless(viewer, dataset, tmp_path):
    root, _ = dataset
    viewer.open(str(root / "annotations" / "panoptic.json"), plugin="napari-odise")
    written = viewer.layers.save(str(tmp_path / "again"), plugin="napari-odise")
    assert written == [str(tmp_path / "again")]
    before, after = dataset_files(root), dataset_files(tmp_path / "again")
    assert sorted(before) == sorted(after)
    for name in before:
        if name != "manifest.json":
            assert before[name] == after[name], name
    manifest = load_json(tmp_path / "again" / "manifest.json")
    assert manifest["images"][0]["model"] == "odise_label_coco_50e"


def test_painting_marks_segments_edited_and_new_ids_must_be_assigned(viewer, dataset, tmp_path):
    root, _ = dataset
    viewer.open(str(root / "annotations" / "panoptic.json"), plugin="napari-odise")
    labels = viewer.layers["photo panoptic"]
    data = labels.data.copy()
    data[3, 0] = 1  # road (7) loses a pixel to person (1)
    labels.data = data
    photo = result_from_labels(labels.data, labels.features, labels.metadata)
    # 2 and 4 were edited before; 1 and 7 are now, as their pixel counts changed.
    assert dict(zip(photo.segments["id"], photo.segments["source"])) == {
        1: "edited", 2: "edited", 4: "edited", 7: "edited"
    }
    assert photo.segments.set_index("id").loc[1, "area"] == 7
    viewer.layers.save(str(root), plugin="napari-odise")  # saving replaces "photo" in place
    dataset_now = open_dataset(root)
    assert dataset_now.names == ["photo", "rand"] and dataset_now.problems == ()
    assert dataset_now.image("photo").edited == 4 and dataset_now.image("photo").image_id == 1
    data[5, 2] = 9  # a new id nobody named
    labels.data = data
    with pytest.raises(SaveError, match=r"'photo': segments \[9\].*assign them"):
        viewer.layers.save(str(tmp_path / "other"), plugin="napari-odise")


def test_open_instances_json(viewer, dataset):
    root, results = dataset
    viewer.open(str(root / "annotations" / "instances.json"), plugin="napari-odise")
    labels = viewer.layers["photo instances"]
    things = results["photo"].segments[results["photo"].segments["isthing"]]
    assert labels.features["index"].tolist() == [0, *things["id"].tolist()]


def test_reader_opens_at_most_max_images_and_says_so(viewer, dataset, monkeypatch):
    import napari_odise._reader as reader_module

    root, _ = dataset
    monkeypatch.setattr(reader_module, "MAX_IMAGES", 1)
    with pytest.warns(UserWarning, match="has 2 images: opening the first 1"):
        viewer.open(str(root / "annotations" / "panoptic.json"), plugin="napari-odise")
    assert [layer.name for layer in viewer.layers] == ["photo", "photo panoptic"]


def test_reader_declines_other_json(tmp_path):
    (tmp_path / "settings.json").write_text('{"theme": "dark"}')
    (tmp_path / "broken.json").write_text("{")
    assert get_reader(str(tmp_path / "settings.json")) is None
    assert get_reader(str(tmp_path / "broken.json")) is None
    assert get_reader(str(tmp_path / "image.png")) is None


def test_writer_pairs_an_unsaved_image_layer_by_name(tmp_path):
    result = literal_result(info={"image_name": "fresh"})
    image = random_image(LITERAL_MAP.shape, seed=4)
    data, kwargs, kind = labels_layer_data(result, "fresh panoptic")
    write_dataset(str(tmp_path / "ds"), [(image, {"name": "fresh"}, "image"),
                                         (data, kwargs, kind)])
    dataset = open_dataset(tmp_path / "ds")
    assert dataset.names == ["fresh"]
    np.testing.assert_array_equal(dataset.read("fresh").label_map, LITERAL_MAP)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(dataset.image("fresh").image)), image)


def test_layer_without_vocabulary_cannot_be_saved(tmp_path):
    with pytest.raises(SaveError, match=r"no napari-odise vocabulary"):
        write_dataset(str(tmp_path / "ds"), [(LITERAL_MAP, {"name": "x", "metadata": {}},
                                              "labels")])
