"""GUI event-loop gaps while the Batch, Segment or Fine-tune widget works (issue 16 item 10: < 50 ms).

    xvfb-run -a python benchmarks/bench_event_loop.py --widget batch --images 6
    xvfb-run -a python benchmarks/bench_event_loop.py --widget segment
    xvfb-run -a python benchmarks/bench_event_loop.py --widget finetune --steps 20

Opens the widget through the Plugins menu in a real napari window, runs the tiny model on the
CPU (random weights; the tiny model's timings, not the official one's), and records the gaps
between ticks of a 10 ms Qt timer on the GUI thread while the work runs: a gap is how long
napari could not repaint or react. Prints p50/p95/max gap in ms, wall and CPU seconds and the
load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widget", choices=["batch", "segment", "finetune"], default="batch")
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps (tiny model, 64 px scenes)")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)

    import napari
    import skimage.data
    from PIL import Image
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    samples = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]

    def picture(i):
        return np.asarray(Image.fromarray(samples[i % 3]).resize((args.size, args.size)))

    with tempfile.TemporaryDirectory() as tmp:
        if args.widget == "batch":
            _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Batch")
            folder = Path(tmp) / "images"
            folder.mkdir()
            for i in range(args.images):
                Image.fromarray(picture(i)).save(folder / f"image{i}.png")
            widget.input_edit.setText(str(folder))
            widget.output_edit.setText(str(Path(tmp) / "out"))
            widget.model_combo.setCurrentText("tiny")
            widget.device_combo.setCurrentText("cpu")
            busy = lambda: widget.worker is not None and widget.run_button.isEnabled() is False  # noqa: E731
            start = widget.run
        elif args.widget == "finetune":
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from synthetic_scenes import write_dataset  # the tests' synthetic scenes (shapes on textures)

            dataset = Path(tmp) / "dataset"
            write_dataset(dataset, 6, size=64)
            _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Fine-tune")
            options = widget.options
            options.dataset.setText(str(dataset))
            options.output.setText(str(Path(tmp) / "run"))
            options.base_model.setCurrentText("tiny")
            options.steps.setValue(args.steps)
            options.batch_size.setValue(2)
            options.image_size.setValue(64)
            options.device.setCurrentText("cpu")
            options.val_every.setValue(10)
            busy = lambda: widget.busy  # noqa: E731
            start = widget.train_button.click
        else:
            _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
            viewer.add_image(picture(0), name="picture", rgb=True)
            widget.model_combo.setCurrentText("tiny")
            widget.device_combo.setCurrentText("cpu")
            busy = lambda: widget.busy  # noqa: E731
            start = widget.run
        for _ in range(20):
            app.processEvents()
        timer.start(10)
        wall, cpu = time.perf_counter(), time.process_time()
        start()
        app.processEvents()
        while busy():
            app.processEvents()
            time.sleep(0.002)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        timer.stop()
    gaps = np.diff(ticks) * 1e3
    print(f"{args.widget}: {len(gaps)} timer gaps over {wall:.1f} s wall, {cpu:.1f} s CPU")
    if gaps.size:
        print(f"gap p50 {np.percentile(gaps, 50):.0f} ms, p95 {np.percentile(gaps, 95):.0f} ms, max {gaps.max():.0f} ms")
    print("status:", widget.status.text()[:200])
    print("load average (1, 5, 15 min):", " ".join(f"{v:.2f}" for v in os.getloadavg()))
    viewer.close()


if __name__ == "__main__":
    main()
