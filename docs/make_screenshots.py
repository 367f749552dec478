"""Screenshots for the README's "Annotating an image, step by step", taken the way a user works:
a real napari window, the widgets opened from the Plugins menu (``add_plugin_dock_widget``).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py

Uses the ``tiny`` model (random weights: no weights needed, labels meaningless) with the demo
settings, so the pictures show the workflow, not ODISE's quality. Writes docs/steps/*.png.
"""

from __future__ import annotations

import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "steps"


def wait(app, done, timeout=300.0):
    end = time.monotonic() + timeout
    while not done():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish")
    for _ in range(30):
        app.processEvents()


def shot(viewer, app, name):
    from skimage.io import imsave

    for _ in range(30):
        app.processEvents()
    OUT.mkdir(exist_ok=True)
    imsave(OUT / name, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print("wrote", OUT / name)


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-odise", "astronaut")
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    shot(viewer, app, "1_open_segment.png")  # official chosen, weights missing: what to do

    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    segment.names_box.setChecked(True)
    segment.run_button.click()
    wait(app, lambda: not segment.busy)
    shot(viewer, app, "2_segmented.png")

    segment.vocabulary_widget.new_text.setText("space suit: spacesuit, astronaut suit")
    segment.vocabulary_widget.add()
    wait(app, lambda: not segment.busy)

    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    layer = viewer.layers["astronaut panoptic"]
    viewer.layers.selection.active = layer
    state = refine.state
    largest = state.table.sort_values("area", ascending=False)["id"].tolist()
    layer.selected_label = largest[0]
    refine.add_to_selection(largest[0])
    refine.add_to_selection(largest[1])
    refine.select_category("space suit")
    shot(viewer, app, "3_refine_selection.png")

    refine.merge()
    refine.reassign()
    layer.mode = "paint"
    shot(viewer, app, "4_merged_reassigned.png")

    _, export = viewer.window.add_plugin_dock_widget("napari-odise", "Export dataset")
    export.folder.setText(str(Path.home() / "astronaut-dataset"))
    wait(app, lambda: export.quality.text().startswith("Changes from the model's output"))  # counted in a worker
    shot(viewer, app, "5_export.png")
    viewer.close()


if __name__ == "__main__":
    main()
