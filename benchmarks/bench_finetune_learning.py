"""How well fine-tuning learns: the tiny model trained on synthetic 64-pixel scenes (two stuff and
two thing categories), then its held-out PQ, overall and for the things alone.

    python benchmarks/bench_finetune_learning.py                 # 24 scenes, 100 steps (about 3 min on 2 idle cores)
    python benchmarks/bench_finetune_learning.py --steps 300 --scenes 48

This was a test; it moved here because it takes minutes (25 on a loaded 2-core CI machine). The
test suite keeps a fast check that learning happens (tests/test_train_finetune.py: 15 steps must
cut the training and held-out losses). Prints PQ before and after, wall and CPU seconds and the
load average, so numbers can be compared between machines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic scenes


def pq_numbers(stats, vocabulary) -> dict:
    """Overall PQ, the things' PQ and their true positives: stuff alone can carry the overall PQ."""
    things = [c.id for c in vocabulary if c.isthing]
    return {"pq": round(stats.pq(), 3), "things_pq": round(stats.pq(things), 3), "things_tp": sum(stats.tp.get(c, 0) for c in things)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=24, help="synthetic scenes, a quarter held out (default: 24)")
    parser.add_argument("--steps", type=int, default=100, help="training steps (default: 100)")
    args = parser.parse_args()

    from conftest import fast_tiny
    from synthetic_scenes import VOCABULARY, write_dataset

    from napari_odise.train.criterion import LossWeights
    from napari_odise.train.finetune import FinetuneConfig, Finetuner

    size = 64
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_dataset(folder / "dataset", args.scenes, size=size)
        config = FinetuneConfig(
            dataset=str(folder / "dataset"), output=str(folder / "run"), base_model="tiny", steps=args.steps,
            batch_size=4, image_size=size, min_scale=0.7, max_scale=1.4, lr=1e-3, grad_clip=1.0, warmup_steps=10,
            schedule="cosine", val_every=0, checkpoint_every=0, device="cpu", val_fraction=0.25,
            loss=LossWeights(num_points=1024),
        )
        wall, cpu = time.perf_counter(), time.process_time()
        trainer = Finetuner(config, model=fast_tiny(short_edge=size, crop_size=size))
        before = pq_numbers(trainer.evaluate_stats(), VOCABULARY)
        trainer.run()
        stats = trainer.evaluate_stats()
        after = pq_numbers(stats, VOCABULARY)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    losses = [h["total"] for h in trainer.history]
    print(f"{args.scenes} scenes ({len(trainer.data.val_names)} held out), {args.steps} steps")
    print(f"held-out, random weights: {before}")
    print(f"held-out, after training: {after}; per category {stats.per_category()}")
    print(f"training loss {losses[0]:.2f} -> {sum(losses[-10:]) / len(losses[-10:]):.2f} (mean of the last 10)")
    print(f"{wall:.0f} s wall, {cpu:.0f} s CPU, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
