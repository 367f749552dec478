"""Build time, forward time and peak memory of the ODISE model (random weights).

    python benchmarks/bench_model.py --config tiny
    python benchmarks/bench_model.py --config official --size 512x640   # several minutes on a CPU

By default the input is not resized (``--short-edge 0``), like the reference trace's 512x640 run
(2 crops); ``--short-edge 1024`` reproduces the official evaluation resize (6 crops at 512x640).
Prints one line per measurement; the numbers are for the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def coco_synonyms():
    data = json.loads((Path(__file__).resolve().parents[1] / "src/napari_odise/presets/coco_panoptic_133.json").read_text())
    cats = data["categories"]
    return [c["synonyms"] for c in cats], [bool(c["isthing"]) for c in cats], [True] * len(cats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", choices=["tiny", "tiny-caption", "official", "official-caption"])
    parser.add_argument("--size", default="512x640", help="HxW of the input image")
    parser.add_argument("--short-edge", type=int, default=0, help="test-time resize (0: keep the input size)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1, help="warm forwards to average")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))

    t0 = time.perf_counter()
    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config

    import_s = time.perf_counter() - t0
    config = get_config(args.config)
    if args.short_edge:
        settings = config.inference.replace(short_edge=args.short_edge)
    else:
        settings = config.inference.replace(short_edge=min(h, w), max_size=max(h, w))
    t0 = time.perf_counter()
    model = build_odise(config, device=args.device)
    build_s = time.perf_counter() - t0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    image = (np.random.default_rng(1234).random((h, w, 3)) * 255).astype(np.uint8)
    synonyms, isthing, seen = coco_synonyms()

    def forward():
        vocab = model.embed_vocabulary(synonyms, isthing, seen)
        encoded = model.encode(image, settings=settings)
        t = time.perf_counter()
        logprobs = model.classify(encoded, vocab, settings)
        label_map, segments = model.panoptic(encoded, logprobs, vocab.isthing, settings)
        return encoded, time.perf_counter() - t

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    forward()
    cold_s = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        _, classify_s = forward()
        warm.append(time.perf_counter() - t0)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"config: {args.config}  input: {h}x{w}  model input short edge: {settings.short_edge}")
    print(f"parameters: trainable {trainable:,}  frozen {frozen:,}")
    print(f"import: {import_s:.1f} s  build (random weights): {build_s:.1f} s")
    print(f"forward cold (incl. 133-class text embeddings): {cold_s:.2f} s")
    print(f"forward warm: {np.mean(warm):.2f} s (mean of {len(warm)})  of which classify+panoptic: {classify_s * 1000:.1f} ms")
    print(f"peak RSS: {peak_rss_gb():.2f} GB")
    if args.device.startswith("cuda"):
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GB")


if __name__ == "__main__":
    main()
