"""How long napari's GUI thread stalls while the Refine panel prepares proposals (issue 14: the UI
must never block on long work), against building them on the GUI thread.

    xvfb-run -a python benchmarks/bench_proposals_panel.py            # 1024x1024, tiny (16 queries)
    xvfb-run -a python benchmarks/bench_proposals_panel.py --size 2048 --queries 100

A real viewer; the tiny model (random weights) segments a random image with the demo settings and
the results go into Labels layers as the Segment widget puts them. The Refine panel opens from
the Plugins menu on the first (the background build starts); measured: the longest gap between
GUI event-loop turns while it builds (a 5 ms timer ticks), the first click after (the list and
the outline layer added) and a later one. Then the second layer is selected and clicked at once:
the click's wall time (it answers "preparing proposals...") and when the list shows. For
comparison, the same build on the GUI thread (a third image). The model's full-size mask cache
is emptied before each build (as for an image opened from the batch store). Prints wall and CPU
ms and the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=None, help="model queries (tiny: 16; official: 100)")
    args = parser.parse_args(argv)

    import napari
    import numpy as np
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_odise import Predictor, Vocabulary, proposals
    from napari_odise._widgets.gl_compat import guard_triton
    from napari_odise._widgets.session import ModelChoice, Session
    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config
    from napari_odise.models import ModelSpec

    guard_triton()
    config = get_config("tiny")
    if args.queries:
        config = dataclasses.replace(config, head=dataclasses.replace(config.head, num_queries=args.queries))
    predictor = Predictor(build_odise(config), device="cpu")
    vocabulary = Vocabulary.preset("coco")
    settings = predictor.named_settings("demo")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(3)]
    results = [predictor.predict(image, vocabulary, settings=settings) for image in images]

    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    session = Session.of(viewer)
    session.pool.put(ModelSpec("tiny", "cpu"), predictor)
    choice = ModelChoice("tiny", "cpu", "fp32", "demo")
    layers = []
    for k, (image, result) in enumerate(zip(images[:2], results[:2])):
        image_layer = viewer.add_image(image, name=f"photo {k}", rgb=True)
        layers.append(session.apply_segmentation(image_layer, {(): result}, vocabulary, choice))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(5)

    def run_until(done, limit=600.0):
        """Turn the event loop until ``done()``; the longest gap between timer ticks (ms)."""
        ticks.clear()
        ticks.append(time.perf_counter())
        while not done():
            if time.perf_counter() - ticks[0] > limit:
                raise TimeoutError("the panel did not finish")
            app.processEvents()
            time.sleep(0.001)
        ticks.append(time.perf_counter())
        return float(np.max(np.diff(ticks))) * 1e3, len(ticks)

    # 1. the panel opens on image 0 (its full-size masks no longer in the model's cache, as after
    #    opening a stored image): the build starts in the background; no click meanwhile
    predictor.model.mask_cache.clear()
    viewer.layers.selection.active = layers[0]
    start, cpu = time.perf_counter(), time.process_time()
    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    open_ms = (time.perf_counter() - start) * 1e3
    picker = refine.proposals
    build_gap, build_turns = run_until(lambda: not picker.preparing)
    build_ms, build_cpu = (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3
    y, x = args.size // 2, args.size // 2
    click = time.perf_counter()
    picker.propose((), y, x)
    first_ms = (time.perf_counter() - click) * 1e3
    listed = len(picker.proposals)
    click = time.perf_counter()
    picker.propose((), y // 2, x // 2)
    later_ms = (time.perf_counter() - click) * 1e3

    # 2. image 1 becomes the panel's layer (build starts) and is clicked at once
    predictor.model.mask_cache.clear()
    viewer.layers.selection.active = layers[1]
    click = time.perf_counter()
    picker.propose((), y, x)
    waiting_ms, waiting = (time.perf_counter() - click) * 1e3, picker.status.text()
    run_until(lambda: not picker.preparing and not picker.status.text().startswith("preparing"))
    listed_after_ms, answered = (time.perf_counter() - click) * 1e3, picker.status.text()

    # 3. for comparison, the same build on the GUI thread (image 2, masks not cached)
    predictor.model.mask_cache.clear()
    on_gui, on_gui_cpu = time.perf_counter(), time.process_time()
    proposals.prepare(predictor, results[2], vocabulary)
    gui_ms, gui_cpu = (time.perf_counter() - on_gui) * 1e3, (time.process_time() - on_gui_cpu) * 1e3
    timer.stop()
    viewer.close()

    load = os.getloadavg()
    print(f"tiny model, {config.head.num_queries} queries, {args.size}x{args.size}, COCO ({len(vocabulary)} categories)")
    print(f"  panel opened (build started):        wall {open_ms:8.1f} ms")
    print(f"  build done in the background after:  wall {build_ms:8.1f} ms  cpu {build_cpu:8.1f} ms (all threads)")
    print(f"  longest GUI event-loop gap meanwhile:     {build_gap:8.1f} ms  ({build_turns} timer turns)")
    print(f"  first click after (list + outline layer added): wall {first_ms:8.1f} ms ({listed} proposals); next click {later_ms:.1f} ms")
    print(f"  click during a build:                wall {waiting_ms:8.1f} ms  -> {waiting!r}")
    print(f"  ... listed when ready, after:        wall {listed_after_ms:8.1f} ms  -> {answered!r}")
    print(f"  the same build on the GUI thread:    wall {gui_ms:8.1f} ms  cpu {gui_cpu:8.1f} ms  (a stall that long)")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")

if __name__ == "__main__":
    main()
