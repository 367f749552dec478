"""Text embeddings of a vocabulary preset through CLIP's text tower: padded to 77 tokens (open_clip's
``encode_text``) against cut after each batch's longest sequence (``clip_encoder.text_embeddings``),
side by side in one run, with the largest difference between the two.

    python benchmarks/bench_text_embeddings.py --config official --preset coco

Random weights (the official architecture builds offline); prints wall and CPU seconds and the load.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="official", help="official or tiny")
    parser.add_argument("--preset", default="coco", help="vocabulary preset")
    parser.add_argument("--limit", type=int, default=0, help="only the first N strings (0: all)")
    args = parser.parse_args(argv)

    from napari_odise.model import clip_encoder
    from napari_odise.model.config import get_config
    from napari_odise.model.text_embeddings import PHOTO_PROMPT
    from napari_odise.vocabulary import Vocabulary

    clip = clip_encoder.build_clip(get_config(args.config).clip)
    raw = [s for group in Vocabulary.preset(args.preset).synonym_lists() for s in group]
    texts = raw + [PHOTO_PROMPT.format(s) for s in raw]
    if args.limit:
        texts = texts[: args.limit]
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{args.config} CLIP text tower, preset {args.preset}: {len(texts)} strings")

    def padded():
        with torch.no_grad():
            tokens = clip_encoder.tokenize(texts, clip.context_length)
            return torch.cat([clip.encode_text(tokens[i : i + 256]).float() for i in range(0, len(texts), 256)])

    cut, cut_wall, cut_cpu = timed(lambda: clip_encoder.text_embeddings(clip, texts))
    full, full_wall, full_cpu = timed(padded)
    print(f"padded to 77 tokens: {full_wall:7.1f} s wall {full_cpu:7.1f} s CPU")
    print(f"cut per batch:       {cut_wall:7.1f} s wall {cut_cpu:7.1f} s CPU  (x{full_wall / cut_wall:.1f} wall)")
    diff = (cut - full).abs().max().item()
    print(f"largest difference: {diff:.2e} (largest value {full.abs().max().item():.2f})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
