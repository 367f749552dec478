"""The screenshot of docs/widgets.md's "Proposals at a click", taken as make_screenshots.py takes
its pictures: a real napari window, the widgets opened from the Plugins menu, the tiny model.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_proposals.py

Segments the astronaut sample (tiny model, random weights: the masks and names are meaningless,
the picture shows the workflow), opens Refine, clicks a pixel in pick mode and steps down the list
to the smallest proposal, whose outline is then on the canvas. Writes docs/screenshot_proposals.png.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from make_screenshots import wait

OUT = Path(__file__).resolve().parent / "screenshot_proposals.png"


def main() -> None:
    import napari
    from napari.utils.interactions import mouse_press_callbacks
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

    viewer.window.remove_dock_widget(segment)  # the Refine panel gets the whole side
    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    layer = viewer.layers["astronaut panoptic"]
    layer.opacity = 0.4  # the photo shows through, the outline stands out
    viewer.layers.selection.active = layer
    wait(app, lambda: not refine.proposals.preparing)  # built in the background once the panel has the layer
    refine.pick_mode()
    y, x = 250, 230
    event = SimpleNamespace(
        type="mouse_press", is_dragging=False, position=(y, x), view_direction=None,
        dims_displayed=[0, 1], dims_point=(y, x), modifiers=[], button=1, handled=False,
    )
    mouse_press_callbacks(layer, event)  # a click in pick mode, as the canvas delivers it
    picker = refine.proposals
    smallest = min(range(len(picker.proposals)), key=lambda k: picker.proposals[k].area)
    for _ in range(smallest):
        picker.next_proposal()  # Down
    viewer.scene.camera.center = (y, x)
    viewer.scene.camera.zoom *= 1.8  # closer: the random model's masks are ragged
    wait(app, lambda: True)
    refine.findChild(QScrollArea).ensureWidgetVisible(picker.list)  # the list, below the buttons
    end = time.monotonic() + 8  # the "segments" notification fades (its timer needs the event loop)
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(30):
        app.processEvents()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # the run's "n segments" message would cover the canvas
    wait(app, lambda: True)
    imsave(OUT, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print("wrote", OUT)
    viewer.close()


if __name__ == "__main__":
    main()
