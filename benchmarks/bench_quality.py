"""Cost of the quality numbers (napari_odise.quality.compare): what the Export widget recounts
after a burst of edits, and each export per image.

    python benchmarks/bench_quality.py --sizes 1024 4096 --repeats 5

A synthetic model output of ~100 blocky segments (80 categories, a third stuff) and a corrected
copy (some segments merged, one deleted, a painted square, ids renumbered as a layer's grow).
Prints per size the median wall and CPU seconds of one compare (and of the whole layer count,
``layer_quality``, which also reads the table), the kept model output's bytes, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def synthetic(size: int, seed: int = 0):
    from napari_odise.quality import ModelOutput

    rng = np.random.default_rng(seed)
    grid = 10
    cells = rng.integers(1, 101, (grid, grid))  # ~100 segment ids on a 10x10 grid of blocks
    model = np.kron(cells, np.ones((size // grid + 1, size // grid + 1), np.int32))[:size, :size].astype(np.int32)
    model_categories = {i: int(rng.integers(1, 81)) for i in range(1, 101)}
    isthing = {c: c % 3 != 0 for c in range(1, 81)}
    corrected = model + 1000  # a layer's ids grow past the model's
    corrected[corrected == 1001] = 1002  # a merge
    corrected[corrected == 1003] = 0  # a deletion
    corrected[size // 4 : size // 2, size // 4 : size // 2] = 5000  # a painted square
    corrected_categories = {i + 1000: c for i, c in model_categories.items()}
    corrected_categories[5000] = 7
    kept = ModelOutput(np.array(model, np.uint8), model_categories, isthing)
    return corrected, corrected_categories, kept, isthing


def timed(function, repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import pandas as pd

    from napari_odise.io.layers import METADATA_KEY, MODEL_OUTPUT_KEY, layer_quality
    from napari_odise.quality import compare
    from napari_odise.vocabulary import Category, Vocabulary

    for size in args.sizes:
        corrected, categories, kept, isthing = synthetic(size)
        wall, cpu = timed(lambda: compare(corrected, categories, kept, isthing), args.repeats)
        vocabulary = Vocabulary([Category(c, f"c{c}", isthing=t) for c, t in isthing.items()])
        features = pd.DataFrame({"index": list(categories), "category_id": list(categories.values())})
        metadata = {METADATA_KEY: {"vocabulary": vocabulary.to_json(), "info": {}, MODEL_OUTPUT_KEY: {(): kept}}}
        layer_wall, layer_cpu = timed(lambda: layer_quality(corrected, features, metadata), args.repeats)
        pq = compare(corrected, categories, kept, isthing).scores("all").pq
        print(
            f"{size}x{size}: compare {wall:.3f} s wall, {cpu:.3f} s CPU; layer_quality {layer_wall:.3f} s "
            f"wall, {layer_cpu:.3f} s CPU; kept output {kept.nbytes / 2**20:.1f} MiB; PQ {pq:.3f}; "
            f"load {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
