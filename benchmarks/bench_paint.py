"""Milliseconds per paint event on a large segmentation layer (issue 16 item 7: < 50 ms).

    python benchmarks/bench_paint.py                      # 4096x4096, 300 segments, brush 40
    python benchmarks/bench_paint.py --size 2048 --events 100

Each event is one ``layer.paint`` call (a script's paint, or one dab outside a stroke: napari
emits one paint event per call), so the time includes napari's own painting. It is measured
with the plugin's layer state following the layer (the table is updated from the event's
values), and for comparison the same paint on a bare layer and a full recount (``sync``).
No viewer window: the cost of drawing the canvas is not included. Prints wall and CPU ms per
event and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def blocks(size: int, segments: int) -> np.ndarray:
    """A label map of about ``segments`` rectangles (ids 1..n)."""
    side = int(np.ceil(np.sqrt(segments)))
    cell = -(-size // side)
    grid = np.arange(1, side * side + 1, dtype=np.int32).reshape(side, side)
    return np.kron(grid, np.ones((cell, cell), np.int32))[:size, :size].copy()


def per_event(paint, events: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(events):
        paint(i)
    return (time.perf_counter() - wall) / events * 1e3, (time.process_time() - cpu) / events * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--brush", type=int, default=40)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args(argv)

    from napari.components import ViewerModel

    from napari_odise._widgets.layer_state import SegmentationLayer
    from napari_odise.vocabulary import Vocabulary

    size, n = args.size, args.events
    points = [(int(size * 0.1 + i * size * 0.8 / n), int(size * 0.2 + i * size * 0.6 / n)) for i in range(n)]

    bare = ViewerModel().add_labels(blocks(size, args.segments), name="bare")
    bare.brush_size = args.brush
    ms_bare = per_event(lambda i: bare.paint(points[i], 7), n)

    layer = ViewerModel().add_labels(blocks(size, args.segments), name="followed")
    layer.brush_size = args.brush
    state = SegmentationLayer(layer, Vocabulary.preset("coco"))
    ms_followed = per_event(lambda i: layer.paint(points[i], 7 + i % 3), n)
    ms_recount = per_event(lambda i: state.sync(), min(n, 10))

    print(f"labels {size}x{size}, {len(state.table)} segments, brush {args.brush}, {n} paint events")
    print(f"napari paint alone (bare layer):        wall {ms_bare[0]:7.1f} ms/event  cpu {ms_bare[1]:7.1f}")
    print(f"paint + plugin table update (followed): wall {ms_followed[0]:7.1f} ms/event  cpu {ms_followed[1]:7.1f}")
    print(f"full recount (sync), for comparison:    wall {ms_recount[0]:7.1f} ms/call   cpu {ms_recount[1]:7.1f}")
    print("load average (1, 5, 15 min):", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
