"""The screenshot of docs/widgets.md's "Review queue", taken as make_screenshots.py takes its
pictures: a real napari window, the widgets opened from the Plugins menu, the tiny model.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_review.py

Segments the astronaut sample (tiny model, random weights: names and scores are meaningless, the
picture shows the workflow), opens Refine, marks the two least confident segments reviewed with V
and stops on the third, which J centred and zoomed on. Writes docs/screenshot_review.png.
"""

from __future__ import annotations

from pathlib import Path

from make_screenshots import wait

OUT = Path(__file__).resolve().parent / "screenshot_review.png"


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication, QScrollArea
    from skimage.io import imsave

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-odise", "astronaut")
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    segment.run_button.click()
    wait(app, lambda: not segment.busy)

    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    layer = viewer.layers["astronaut panoptic"]
    viewer.layers.selection.active = layer
    for _ in range(30):
        app.processEvents()
    queue = refine.review
    queue.next_segment()  # J
    queue.mark_reviewed()  # V: reviewed, on to the next
    queue.mark_reviewed()
    layer.show_selected_label = True  # only the segment under review, over the photo
    for _ in range(30):
        app.processEvents()
    refine.findChild(QScrollArea).ensureWidgetVisible(queue)
    for _ in range(30):
        app.processEvents()
    imsave(OUT, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print("wrote", OUT, "-", queue.counter.text(), "- current:", refine.current.text())
    viewer.close()


if __name__ == "__main__":
    main()
