"""What one review-queue key press (J) computes, at 1024x1024 and 4096x4096 (not a timed test).

    python benchmarks/bench_review.py [--segments 150] [--repeat 5]

A press orders the plane's segments (``review.review_order``) and finds the chosen segment's box
for the camera (``segment_box``). The first press after the model result or its segments in the
layer changed also maps the model's margins onto the layer's ids (``layer_margins``, a pass over
the pixels; the panel keeps it until then); in a stack, every press also re-derives the plane's
table from its pixels (``io.layers.plane_table``; a 2-D layer's table is kept in sync already).
The plane is a map of random blocks with one tiny speck per 10 segments. Prints milliseconds
(median of the repeats) of each, wall and CPU seconds and the load average.
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import numpy as np


def plane_and_result(side: int, segments: int, seed: int = 0):
    from napari_odise.result import PanopticResult, segments_table

    rng = np.random.default_rng(seed)
    grid = int(np.ceil(np.sqrt(segments)))
    cell = side // grid + 1
    blocks = rng.permutation(grid * grid)[: grid * grid].reshape(grid, grid) % segments + 1
    label_map = np.kron(blocks, np.ones((cell, cell), np.int32))[:side, :side].astype(np.int32)
    for speck in range(1, segments + 1, 10):
        y, x = rng.integers(0, side - 3, size=2)
        label_map[y : y + 3, x : x + 3] = speck
    ids, areas = np.unique(label_map, return_counts=True)
    table = segments_table(ids, [1] * len(ids), ["cat"] * len(ids), [True] * len(ids),
                           rng.random(len(ids)), areas, ["model"] * len(ids))
    from napari_odise.vocabulary import Vocabulary

    result = PanopticResult(label_map, table, Vocabulary.parse("cat"),
                            margins={int(i): float(m) for i, m in zip(ids, rng.random(len(ids)))})
    return label_map, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from napari_odise._widgets.review_queue import layer_margins, segment_box
    from napari_odise.io.layers import plane_table
    from napari_odise.review import review_order

    for side in (1024, 4096):
        plane, result = plane_and_result(side, args.segments)
        state = SimpleNamespace(model_results={(): result}, plane=lambda key, plane=plane: plane)
        table = result.segments
        times = {"press": [], "first press: margins": [], "stack plane: table": []}
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.repeat):
            start = time.perf_counter()
            margins = layer_margins(state, (), table)
            times["first press: margins"].append(time.perf_counter() - start)
            start = time.perf_counter()
            order = review_order(table, plane.size, margins)
            segment_box(plane, order[0])
            times["press"].append(time.perf_counter() - start)
            start = time.perf_counter()
            plane_table(plane, table)
            times["stack plane: table"].append(time.perf_counter() - start)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        parts = ", ".join(f"{name} {1000 * np.median(t):.1f} ms" for name, t in times.items())
        print(f"{side}x{side}, {len(table)} segments: {parts} (median of {args.repeat}); "
              f"wall {wall:.2f} s, CPU {cpu:.2f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
