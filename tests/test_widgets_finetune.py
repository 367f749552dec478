"""The Fine-tune widget in a real (headless) viewer: a few steps of the tiny model on synthetic
scenes, the result offered (and loading) in the Segment widget, cancel and resume, and errors as
notifications. The base model is the tiny one at 64 px (``load_model`` patched), so every step is
cheap."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import fast_tiny
from napari.utils.notifications import notification_manager
from qtpy.QtWidgets import QFileDialog
from synthetic_scenes import scene, write_dataset

import napari_odise.train.finetune as finetune_module
from napari_odise.models import ModelSpec
from napari_odise._widgets.finetune_options import CHECKPOINT_ITEM
from napari_odise._widgets.finetune_widget import FinetuneWidget
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.segment_widget import CHECKPOINT_ITEM as PICK_CHECKPOINT, SegmentWidget
from napari_odise._widgets.session import Session
from napari_odise._widgets.training_run import describe_step

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    guard_triton()  # a viewer made by an earlier test module must not meet Triton (see gl_compat)
    folder = tmp_path_factory.mktemp("finetune_dataset")
    write_dataset(folder, 6, size=SIZE)
    return folder


@pytest.fixture
def base_models(monkeypatch):
    """What the Finetuner builds for a base model name: the tiny model at 64 px, or a
    replacement a test puts in."""
    built = {"tiny": lambda: fast_tiny(short_edge=SIZE, crop_size=SIZE)}
    monkeypatch.setattr(finetune_module, "load_model", lambda name, **options: built[str(name)]())
    return built


def finetune_panel(viewer, dataset, tmp_path, direct: bool):
    """The Fine-tune widget opened from the Plugins menu, or built directly, set for a short run."""
    if direct:
        widget = FinetuneWidget(viewer)
    else:
        _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Fine-tune")
    options = widget.options
    options.dataset.setText(str(dataset))
    options.output.setText(str(tmp_path / "run"))
    options.base_model.setCurrentText("tiny")
    options.steps.setValue(2)
    options.batch_size.setValue(1)
    options.image_size.setValue(SIZE)
    options.lr.setText("1e-3")
    options.device.setCurrentText("cpu")
    options.val_every.setValue(0)
    options.checkpoint_every.setValue(0)
    options.num_points.setValue(256)
    return viewer, widget


@pytest.fixture
def panel(make_napari_viewer, dataset, base_models, tmp_path):
    return finetune_panel(make_napari_viewer(), dataset, tmp_path, direct=False)


@pytest.fixture
def direct_panel(make_napari_viewer, dataset, base_models, tmp_path):
    return finetune_panel(make_napari_viewer(), dataset, tmp_path, direct=True)


def train_and_wait(widget, qtbot):
    widget.train_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)


def messages_since(count: int) -> list[str]:
    return [record.message for record in notification_manager.records[count:]]


def test_training_finishes_and_the_model_becomes_a_segment_choice_that_loads(panel, qtbot, tmp_path):
    viewer, widget = panel
    segment = SegmentWidget(viewer)
    widget.options.val_every.setValue(2)  # one validation (of the one held-out 64 px image) at the end
    records = len(notification_manager.records)
    train_and_wait(widget, qtbot)

    path = tmp_path / "run" / "model.pth"
    assert path.is_file() and (tmp_path / "run" / "last.pt").is_file()
    assert [(r.step, r.total) for r in widget.reports] == [(0, 2), (1, 2), (2, 2)]
    assert (widget.progress_bar.value(), widget.progress_bar.maximum()) == (2, 2)
    last = widget.reports[-1]
    assert set(last.losses) == {"loss_ce", "loss_mask", "loss_dice", "total"}
    assert all(math.isfinite(v) for v in last.losses.values())
    assert widget.losses.text() == describe_step(last) and widget.losses.text().startswith("step 2/2: loss ")
    assert [r.val_pq for r in widget.reports] == [None, None, last.val_pq] and 0 <= last.val_pq <= 1
    assert widget.validation.text() == f"validation PQ {last.val_pq:.3f} (step 2)"
    assert json.loads((tmp_path / "run" / "training.json").read_text())["final_val_pq"] == last.val_pq
    assert widget.status.text() == f"done: {path} (now a choice in the Segment widget's Model list)"
    assert any(f"Fine-tuned model saved: {path}" in m for m in messages_since(records))
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()

    # Offered in the Segment widget's model list (before its "pick a file" item) and as a base model.
    models = [segment.model_combo.itemText(i) for i in range(segment.model_combo.count())]
    assert models[-2:] == [str(path), PICK_CHECKPOINT]
    bases = [widget.options.base_model.itemText(i) for i in range(widget.options.base_model.count())]
    assert bases[-2:] == [str(path), CHECKPOINT_ITEM]
    assert list(Session.of(viewer).checkpoints) == [str(path)]
    # A Segment widget opened later lists it too.
    assert SegmentWidget(viewer).model_combo.findText(str(path)) == models.index(str(path))

    # It loads and segments, with the trained weights.
    image, _ = scene(3, SIZE)
    viewer.add_image(image, name="scene", rgb=True)
    segment.model_combo.setCurrentText(str(path))
    segment.device_combo.setCurrentText("cpu")
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=60_000)
    layer = viewer.layers["scene panoptic"]
    assert layer.metadata["odise"]["info"]["model"] == str(path) and layer.data.shape == (SIZE, SIZE)
    session = Session.of(viewer)
    loaded = session.pool.peek(ModelSpec(path, "cpu")).model.trainable_state_dict()
    for key, value in widget._run.trainer.model.trainable_state_dict().items():
        assert torch.equal(loaded[key], value)
    session.add_checkpoint(path)  # e.g. trained again into the same folder: the file is reloaded
    assert session.pool.peek(ModelSpec(path, "cpu")) is None and list(session.checkpoints) == [str(path)]


def test_a_checkpoint_picked_in_the_segment_widget_is_offered_as_a_base_model(direct_panel, monkeypatch, tmp_path):
    viewer, widget = direct_panel
    segment = SegmentWidget(viewer)
    picked = tmp_path / "elsewhere" / "model.pth"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(picked), ""))
    item = segment.model_combo.findText(PICK_CHECKPOINT)
    segment.model_combo.setCurrentIndex(item)
    segment.model_combo.activated.emit(item)  # what choosing the item with the mouse does
    assert segment.model_combo.currentText() == str(picked) == segment.choice().model
    assert widget.options.base_model.findText(str(picked)) == widget.options.base_model.count() - 2


def test_cancel_keeps_last_pt_and_train_again_resumes_there(panel, qtbot, tmp_path):
    viewer, widget = panel
    widget.options.steps.setValue(50)  # far more than it gets to: the cancel always lands mid-run
    records = len(notification_manager.records)
    widget.train_button.click()
    qtbot.waitUntil(lambda: len(widget.reports) > 1, timeout=60_000)  # step 1 is done
    assert widget.cancel_button.isEnabled() and not widget.options.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)

    stopped = widget._run.step
    checkpoint = tmp_path / "run" / "last.pt"
    assert 1 <= stopped < 50 and not (tmp_path / "run" / "model.pth").exists()
    assert torch.load(checkpoint, weights_only=True)["step"] == stopped
    expected = (
        f"stopped at step {stopped} of 50; {checkpoint} keeps it: press Train again with Resume "
        f"ticked to continue from there"
    )
    assert widget.status.text() == expected
    assert messages_since(records) == [f"Fine-tune: {expected}"]

    widget.options.steps.setValue(stopped + 1)  # one more step is enough to see where it goes on
    assert widget.options.resume.isChecked()
    train_and_wait(widget, qtbot)
    first = widget.reports[0]
    assert (first.step, first.losses) == (stopped, {})
    assert describe_step(first) == f"resuming at step {stopped}"
    assert [r.step for r in widget.reports[1:]] == [stopped + 1]
    assert widget.losses.text().startswith(f"step {stopped + 1}/{stopped + 1}: loss ")
    history = widget._run.trainer.history
    assert [h["step"] for h in history] == list(range(1, stopped + 2))
    assert (tmp_path / "run" / "model.pth").is_file()


def test_errors_become_notifications_that_say_what_to_do(panel, dataset, base_models, qtbot, tmp_path):
    viewer, widget = panel
    options = widget.options

    def failure(in_worker: bool = True) -> str:
        records = len(notification_manager.records)
        train_and_wait(widget, qtbot)
        messages = messages_since(records)
        assert len(messages) == 1 and widget.train_button.isEnabled() and options.isEnabled()
        assert (widget.status.text() == "failed (see the notification)") == in_worker
        return messages[0]

    options.dataset.setText("")
    assert failure(in_worker=False).startswith("Fine-tune: choose the dataset folder: one written by the Export")
    options.dataset.setText(str(tmp_path))  # a folder, but no dataset
    assert f"{tmp_path} is not a napari-odise dataset (no manifest.json)" in failure()
    options.dataset.setText(str(dataset))

    options.precision.setCurrentText("fp16")
    assert "mixed precision training needs a CUDA GPU; use precision='fp32' on the CPU" in failure()
    options.precision.setCurrentText("fp32")

    base_models["tiny"] = lambda: fast_tiny("tiny-caption", short_edge=SIZE, crop_size=SIZE)
    assert "the caption model was trained from captions" in failure()

    def diverged():  # what a too-high learning rate leads to: NaN outputs
        model = fast_tiny(short_edge=SIZE, crop_size=SIZE)
        with torch.no_grad():
            for parameter in model.decoder.parameters():
                parameter.fill_(float("nan"))
        return model

    base_models["tiny"] = diverged
    assert "training diverged): lower the learning rate" in failure()
    assert not (tmp_path / "run" / "model.pth").exists() and not widget.reports[1:]


def test_a_dataset_without_segments_is_refused_before_training(panel, qtbot, tmp_path):
    """It trained and reported "validation PQ nan" (issue 16 item 12)."""
    import numpy as np

    from napari_odise import PanopticResult
    from napari_odise.io import export_results
    from synthetic_scenes import VOCABULARY

    empty = tmp_path / "empty"
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    nothing = PanopticResult.from_segments_info(np.zeros((SIZE, SIZE), np.int32), [], VOCABULARY)
    export_results([nothing], empty, [pixels], ["blank"], instances=False, semantic=False)
    viewer, widget = panel
    widget.options.dataset.setText(str(empty))
    records = len(notification_manager.records)
    widget.train_button.click()
    assert not widget.busy and widget.train_button.isEnabled()
    [message] = messages_since(records)
    assert message.startswith(f"Fine-tune: {empty} has no segments to learn from")
