"""Milliseconds to list the model's proposals at a click and to accept one (issue 14: < 50 ms
per click at 1024x1024 on the CPU with the tiny model).

    python benchmarks/bench_proposals.py                        # 1024 and 4096, tiny (16 queries)
    python benchmarks/bench_proposals.py --sizes 1024 --queries 100 --threads 1

The tiny model (random weights) segments a random image of each size with the demo settings.
Then, per size:
- first click: the vocabulary-free mask index (every query's mask upsampled once, kept as packed
  bits) and the class probabilities of the vocabulary: paid once per image / per vocabulary;
- per click: ``proposals_at`` at many pixels (what every later click costs);
- accept: ``proposals.accept`` (the pure edit on the label map and table), and the same edit
  committed to a napari Labels layer as the Refine panel does it (one undo step, table re-derived;
  undone between repeats), without a window.
Prints wall and CPU ms (medians over the repeats) and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def medians(samples):
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--queries", type=int, default=None, help="model queries (tiny: 16; official: 100)")
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--accepts", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)

    import dataclasses

    import numpy as np
    import torch
    from napari.components import ViewerModel

    from napari_odise import Predictor, Vocabulary, proposals
    from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config

    config = get_config("tiny")
    if args.queries:
        config = dataclasses.replace(config, head=dataclasses.replace(config.head, num_queries=args.queries))
    predictor = Predictor(build_odise(config), device="cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    vocabulary = Vocabulary.preset("coco")
    settings = predictor.named_settings("demo")
    print(f"tiny model, {config.head.num_queries} queries, COCO ({len(vocabulary)} categories), "
          f"demo settings, torch threads {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        result, predict_ms, _ = timed(lambda: predictor.predict(image, vocabulary, settings=settings))
        _, index_ms, index_cpu = timed(lambda: proposals.mask_index(predictor, result))
        index = proposals.mask_index(predictor, result)
        pixels = rng.integers(0, size, (args.clicks, 2))
        _, first_ms, first_cpu = timed(lambda: proposals.proposals_at(predictor, result, *pixels[0], vocabulary))
        clicks, counts = [], []
        for y, x in pixels:
            found, wall, cpu = timed(lambda: proposals.proposals_at(predictor, result, int(y), int(x), vocabulary))
            clicks.append((wall, cpu))
            counts.append(len(found))
        click_wall, click_cpu = medians(clicks)
        worst = max(w for w, _ in clicks)

        y, x = (int(v) for v in pixels[int(np.argmax(counts))])
        chosen = proposals.proposals_at(predictor, result, y, x, vocabulary)[0]
        mask = proposals.proposal_mask(predictor, result, chosen)
        pure = []
        for _ in range(args.accepts):
            _, wall, cpu = timed(lambda: proposals.accept(
                result.label_map, result.segments, proposals.proposal_mask(predictor, result, chosen),
                chosen.category, chosen.score, (y, x), vocabulary=vocabulary,
            ))
            pure.append((wall, cpu))
        data, rows, claimed = initial_labels(result.label_map.shape, {(): result})
        layer = ViewerModel().add_labels(data)
        state = SegmentationLayer(layer, vocabulary, rows, claimed=claimed, model_results={(): result})

        def commit():
            state.sync()
            old = state.plane_table(())
            new_map, new_table = proposals.accept(
                np.array(layer.data), old, proposals.proposal_mask(predictor, result, chosen),
                chosen.category, chosen.score, (y, x), vocabulary=vocabulary,
            )
            state.commit((), new_map, new_table, old)

        committed = []
        for _ in range(args.accepts):
            _, wall, cpu = timed(commit)
            committed.append((wall, cpu))
            layer.undo()
        pure_wall, pure_cpu = medians(pure)
        commit_wall, commit_cpu = medians(committed)
        print(f"\n{size}x{size}: predict {predict_ms / 1e3:.1f} s, {len(result.segments)} segments; "
              f"mask index {index.nbytes / 2**20:.1f} MiB")
        print(f"  first click, mask index (once per image):  wall {index_ms:8.1f} ms  cpu {index_cpu:8.1f}")
        print(f"  first click, class scores (once per vocab): wall {first_ms:8.1f} ms  cpu {first_cpu:8.1f}")
        print(f"  per click, {args.clicks} pixels (median):      wall {click_wall:8.3f} ms  cpu {click_cpu:8.3f}"
              f"  (max {worst:.3f} ms; {statistics.mean(counts):.1f} proposals per pixel)")
        print(f"  accept, pure edit (median of {args.accepts}):       wall {pure_wall:8.1f} ms  cpu {pure_cpu:8.1f}"
              f"  ({mask.sum():,} px mask)")
        print(f"  accept, committed to a Labels layer:         wall {commit_wall:8.1f} ms  cpu {commit_cpu:8.1f}")
    print("\nload average (1, 5, 15 min):", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
