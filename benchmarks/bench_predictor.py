"""Time of ``Predictor.predict`` and ``Predictor.reclassify`` at 512x512 and 1024x1024, and peak memory.

    python benchmarks/bench_predictor.py                       # tiny, then official if its weights are present
    python benchmarks/bench_predictor.py --models tiny --repeats 5 --json bench.json

The tiny model keeps the official geometry (shortest edge resized to 1024, 512 crops), so its
timings show the pipeline's shape, not ODISE's real cost. Both sizes run at the official
test-time resize: a 512x512 image is upscaled to 1024x1024 before the backbone, as the official
evaluation does.

- predict: median of ``--repeats`` warm runs (``cold`` is the first, with the vocabulary's text
  embeddings and one-time initialisation).
- reclassify: a new vocabulary (ADE20K-150) from the cached per-query tensors; ``cold`` computes
  its text embeddings, ``warm`` (median) has them cached, as when switching back and forth.
- speed-up: warm predict / warm reclassify.
- memory: the process's peak resident set (CPU; it never goes down, so read it per phase) and
  PyTorch's peak allocated GPU memory per phase (CUDA only).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np
import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_image(size: int) -> np.ndarray:
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.BICUBIC))


class Phase:
    """Wall time of a block, with the GPU synchronised and its peak memory reset."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None
        self.rss_mb = peak_rss_mb()


def measure(name: str, args) -> dict:
    from napari_odise import Predictor, Vocabulary

    t0 = time.perf_counter()
    try:
        predictor = Predictor.from_pretrained(name, device=args.device, precision=args.precision)
    except Exception as error:  # noqa: BLE001 - e.g. the official weights are not installed
        reason = str(error).splitlines()[0]
        print(f"{name}: skipped: {reason}")
        return {"model": name, "skipped": reason}
    load_s = time.perf_counter() - t0
    coco, ade = Vocabulary.preset("coco"), Vocabulary.preset("ade20k")
    report = {"model": name, "device": str(predictor.device), "precision": args.precision, "load_s": load_s, "sizes": {}}
    print(f"{name} on {predictor.device} ({args.precision}): loaded in {load_s:.1f} s, torch threads {torch.get_num_threads()}")
    for size in args.sizes:
        image = test_image(size)
        with Phase(predictor.device) as cold:
            result = predictor.predict(image, coco)
        warm = []
        for _ in range(args.repeats):
            with Phase(predictor.device) as phase:
                result = predictor.predict(image, coco)
            warm.append(phase)
        with Phase(predictor.device) as re_cold:
            predictor.reclassify(result, ade)
        re_warm = []
        for _ in range(max(args.repeats, 5)):
            with Phase(predictor.device) as phase:
                predictor.reclassify(result, ade)
            re_warm.append(phase)
        predict_s = statistics.median(p.seconds for p in warm)
        reclassify_s = statistics.median(p.seconds for p in re_warm)
        row = {
            "predict_cold_s": cold.seconds,
            "predict_s": predict_s,
            "reclassify_cold_s": re_cold.seconds,
            "reclassify_s": reclassify_s,
            "speedup": predict_s / reclassify_s,
            "speedup_cold": predict_s / re_cold.seconds,
            "peak_rss_mb_after_predict": warm[-1].rss_mb,
            "peak_rss_mb_after_reclassify": re_warm[-1].rss_mb,
            "peak_gpu_mb_predict": max((p.gpu_mb or 0) for p in warm) if predictor.device.type == "cuda" else None,
            "peak_gpu_mb_reclassify": max((p.gpu_mb or 0) for p in re_warm) if predictor.device.type == "cuda" else None,
            "segments": len(result.segments),
        }
        report["sizes"][f"{size}x{size}"] = row
        gpu = ""
        if row["peak_gpu_mb_predict"] is not None:
            gpu = f", GPU peak {row['peak_gpu_mb_predict']:.0f} / {row['peak_gpu_mb_reclassify']:.0f} MB"
        print(
            f"  {size}x{size}: predict {predict_s:.3f} s (cold {cold.seconds:.3f} s) | "
            f"reclassify {reclassify_s * 1000:.1f} ms (new vocabulary, cold {re_cold.seconds * 1000:.1f} ms) | "
            f"speed-up x{row['speedup']:.0f} (x{row['speedup_cold']:.0f} cold) | "
            f"peak RSS {row['peak_rss_mb_after_predict']:.0f} MB{gpu}"
        )
    del predictor
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "official"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reports = [measure(name, args) for name in args.models]
    for report in reports:
        row = report.get("sizes", {}).get("1024x1024")
        if report["model"].startswith("tiny") and row:
            verdict = "ok" if row["speedup"] >= 100 else "BELOW 100x"
            print(f"{report['model']} reclassify speed-up at 1024x1024: x{row['speedup']:.0f} ({verdict})")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(reports, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
