"""One loaded model per spec per process: the pool shared by the widgets, the batch runner and the CLI."""

import threading

import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import fast_tiny
from napari_odise import Predictor
from napari_odise.models import ModelChoiceError, ModelSpec
from napari_odise.pool import ModelPool, default_pool, set_default_pool


def counting_loader(built: list):
    """Builds the fast tiny model for any tiny spec and records every build."""

    def load(spec: ModelSpec):
        built.append(spec)
        return Predictor(fast_tiny(spec.name), device=spec.device, precision=spec.precision, name=spec.name)

    return load


def test_one_copy_per_spec_and_auto_means_this_machines_device():
    built = []
    pool = ModelPool(counting_loader(built))
    first = pool.get(ModelSpec("tiny", "cpu"))
    assert pool.get(ModelSpec("tiny", "cpu")) is first
    assert pool.get(ModelSpec("tiny", "auto")) is first  # no GPU here: "auto" is the CPU
    assert pool.builds == 1 and built == [ModelSpec("tiny", "cpu")]
    caption = pool.get(ModelSpec("tiny-caption", "cpu"))
    assert caption is not first and pool.builds == 2
    assert set(pool.loaded()) == {ModelSpec("tiny", "cpu"), ModelSpec("tiny-caption", "cpu")}


def test_keep_one_frees_the_other_models_before_loading():
    pool = ModelPool(counting_loader([]), keep_one=True)
    pool.get(ModelSpec("tiny", "cpu"))
    pool.get(ModelSpec("tiny-caption", "cpu"))
    assert pool.loaded() == [ModelSpec("tiny-caption", "cpu")]
    assert pool.peek(ModelSpec("tiny", "cpu")) is None
    pool.get(ModelSpec("tiny", "cpu"), keep_one=False)  # per call too
    assert len(pool.loaded()) == 2


def test_concurrent_first_uses_load_once():
    built = []
    pool = ModelPool(counting_loader(built))
    got = []
    threads = [threading.Thread(target=lambda: got.append(pool.get(ModelSpec("tiny", "cpu")))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len({id(p) for p in got}) == 1


def test_release_by_checkpoint_path(tmp_path):
    checkpoint = tmp_path / "run" / "model.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"")
    pool = ModelPool(lambda spec: object())
    spec = ModelSpec(checkpoint, "cpu")
    assert spec.name == str(checkpoint.resolve())  # one spelling per file
    pool.get(spec)
    pool.get(ModelSpec("tiny", "cpu"))
    assert pool.release(str(tmp_path / "run" / ".." / "run" / "model.pth")) == 1
    assert pool.loaded() == [ModelSpec("tiny", "cpu")]


def test_specs_refuse_unknown_choices_with_what_to_do(tmp_path):
    with pytest.raises(ModelChoiceError, match="unknown model 'tiniest'.*official-caption"):
        ModelSpec("tiniest")
    with pytest.raises(ModelChoiceError, match="precision must be one of fp32, fp16, bf16"):
        ModelSpec("tiny", precision="fp64")
    with pytest.raises(ModelChoiceError, match="device must be one of auto, cpu, cuda"):
        ModelSpec("tiny", device="tpu")
    assert ModelSpec("tiny", "cuda:1").device == "cuda:1"


def test_spec_settings_follow_the_models_variant():
    assert ModelSpec("tiny").settings().classify_part() == {
        "overlap_threshold": 0.8, "object_mask_threshold": 0.0, "alpha": 0.3, "beta": 0.7,
    }
    caption = ModelSpec("tiny-caption").settings("evaluation")
    assert (caption.alpha, caption.beta) == (0.35, 0.65)
    demo = ModelSpec("official").settings("demo", short_edge=768)
    assert (demo.overlap_threshold, demo.alpha, demo.beta, demo.short_edge) == (0.0, 0.35, 0.65, 768)


def test_segment_and_batch_widgets_opened_from_the_plugins_menu_share_one_model(
    make_napari_viewer, qtbot, tmp_path
):
    """The Batch widget used to load a second full copy of the model beside the Segment widget's."""
    built = []
    set_default_pool(ModelPool(counting_loader(built)))
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    _, batch = viewer.window.add_plugin_dock_widget("napari-odise", "Batch")
    image = skimage.data.astronaut()[::4, ::4]
    viewer.add_image(image, name="astronaut", rgb=True)
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=60_000)
    assert "astronaut panoptic" in viewer.layers

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(image).save(folder / "astronaut.png")
    batch.input_edit.setText(str(folder))
    batch.output_edit.setText(str(tmp_path / "out"))
    batch.model_combo.setCurrentText("tiny")
    batch.device_combo.setCurrentText("auto")  # the same model on this machine
    batch.settings_combo.setCurrentText("demo")
    batch.vocab_combo.setCurrentText("coco")
    batch.run()
    qtbot.waitUntil(lambda: batch.run_button.isEnabled(), timeout=60_000)
    assert batch.summary is not None and batch.summary.done == ["astronaut.png"], batch.status.text()

    assert default_pool().builds == 1 and built == [ModelSpec("tiny", "cpu")]
    predictor = default_pool().peek(ModelSpec("tiny", "cpu"))
    assert predictor.encode_calls == 2  # one image through each widget, on the one model
    # Same model, same settings, same image: the batch's labels equal the layer's.
    from napari_odise.batch import BatchStore

    stored = BatchStore.open(tmp_path / "out" / "store.zarr").load_result("astronaut.png")
    layer = viewer.layers["astronaut panoptic"]
    np.testing.assert_array_equal(np.asarray(layer.data) > 0, stored.label_map > 0)
    assert stored.settings.overlap_threshold == 0.0  # the demo settings chosen in the widget
