"""Seconds to link a segmented stack (napari_odise.stack_linking), core and in a Labels layer.

    python benchmarks/bench_stack_linking.py                        # 50 planes of 1024x1024
    python benchmarks/bench_stack_linking.py --planes 20 --size 2048 --objects 80

The stack is synthetic (no model): ``--objects`` discs of 4 thing categories drifting a few
pixels per plane, over one stuff segment, each plane numbered in a shuffled order as a model
would. Timed: ``link_stack`` on the per-plane results (the core: IoU matrices, Hungarian per
category, relabelled results), and ``link_layer_planes`` on a Labels layer holding the stack
unlinked (what the Segment widget runs after an all-planes run: the core's tracks plus one
undoable write of the renamed planes). Prints wall and CPU seconds and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def moving_discs(planes: int, size: int, objects: int, seed: int = 0):
    """{(k,): PanopticResult} of a stack of drifting discs over stuff."""
    from napari_odise.result import PanopticResult
    from napari_odise.vocabulary import Vocabulary

    vocabulary = Vocabulary.parse("cell\nnucleus\nbead\nvesicle\nbackground (stuff)")
    things, stuff = [c.id for c in vocabulary][:4], [c.id for c in vocabulary][4]
    rng = np.random.default_rng(seed)
    radius = rng.uniform(size / 60, size / 25, objects)
    start = rng.uniform(0.1 * size, 0.9 * size, (objects, 2))
    velocity = rng.uniform(-size / 300, size / 300, (objects, 2))
    categories = rng.choice(things, objects)
    yy, xx = np.mgrid[:size, :size]
    stack = {}
    for k in range(planes):
        label_map = np.zeros((size, size), np.int32)
        ids = rng.permutation(objects) + 1
        for i in range(objects):
            cy, cx = start[i] + k * velocity[i]
            r = int(radius[i]) + 1
            y0, y1, x0, x1 = max(int(cy) - r, 0), min(int(cy) + r + 1, size), max(int(cx) - r, 0), min(int(cx) + r + 1, size)
            window = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= radius[i] ** 2
            label_map[y0:y1, x0:x1][window] = ids[i]
        label_map[label_map == 0] = objects + 1
        info = [{"id": int(ids[i]), "category_id": int(categories[i]), "score": 0.8} for i in range(objects)]
        info.append({"id": objects + 1, "category_id": stuff, "score": 0.9})
        stack[(k,)] = PanopticResult.from_segments_info(label_map, info, vocabulary)
    return stack, vocabulary


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planes", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--objects", type=int, default=40)
    args = parser.parse_args(argv)

    from napari.components import ViewerModel

    from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
    from napari_odise._widgets.linked_planes import link_layer_planes
    from napari_odise.stack_linking import link_stack

    stack, vocabulary = moving_discs(args.planes, args.size, args.objects)
    print(f"{args.planes} planes of {args.size}x{args.size}, {args.objects} moving discs + stuff per plane")

    linked, wall, cpu = timed(lambda: link_stack(stack))
    print(f"core link_stack:        {wall:6.2f} s wall, {cpu:6.2f} s CPU "
          f"({wall / args.planes * 1e3:.0f} ms per plane); {linked.linked()} tracks through several planes")

    data, rows, claimed = initial_labels((args.planes, args.size, args.size), stack)
    layer = ViewerModel().add_labels(data, name="stack")
    state = SegmentationLayer(layer, vocabulary, rows, claimed=claimed)
    spanning, wall, cpu = timed(lambda: link_layer_planes(state))
    print(f"layer link_layer_planes: {wall:6.2f} s wall, {cpu:6.2f} s CPU "
          f"({wall / args.planes * 1e3:.0f} ms per plane); {spanning} tracks through several planes")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
