"""Images/s, peak GPU memory and half-vs-float32 agreement of the official-size model on one GPU.

    python benchmarks/gpu_check.py                       # official size, random weights, cuda
    python benchmarks/gpu_check.py --device cpu --tiny   # the smoke run the tests make

Run by benchmarks/gpu_check.sh on a bare CUDA machine (no network, no weights): the model is the
official architecture with seeded random weights (``build_odise("official")`` builds offline),
built once in float32 on the CPU and copied to the device per precision (fp16/bf16: stored in
that dtype, model/precision.py). For each precision and image size it runs the full ``predict``
(backbone, decoder, MaskCLIP, classify, panoptic merge; COCO-133 vocabulary, its text embedded
beforehand) once to warm up, then ``--repeats`` times timed, and prints images/s, peak memory
(``torch.cuda.max_memory_allocated``, weights included) and, for fp16/bf16, the agreement with
float32 on the same image: max relative difference of the mask logits and of the class
probabilities (max |a - b| / max |a|) and the share of equal panoptic pixels. Sizes are the input
images' (evaluation settings: short edge 1024, so 1024x1024 is 4 crops and 1024x1536 is 6).
``--budget`` seconds (default 420) bounds the whole run: what no longer fits is skipped and said.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; a hub lookup only wastes time

import numpy as np  # noqa: E402
import torch  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _import_project():
    try:
        import napari_odise  # noqa: F401
    except ImportError:  # not installed: run from the source tree
        sys.path.insert(0, SRC)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def test_image(height: int, width: int) -> np.ndarray:
    return (np.random.default_rng(height * 10_000 + width).random((height, width, 3)) * 255).astype(np.uint8)


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


def run_precision(base_model, precision, device, sizes, settings_for, vocabulary, repeats, deadline, reference):
    """One precision: images/s per size, peak memory, and agreement with ``reference`` (fp32 outputs)."""
    from napari_odise.predictor import Predictor

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    predictor = Predictor(copy.deepcopy(base_model), device=device, precision=precision)
    embedding = predictor.embed(vocabulary)
    synchronize(device)
    report = {"precision": precision, "load_s": round(time.perf_counter() - started, 1), "sizes": {}}
    for height, width in sizes:
        key = f"{height}x{width}"
        if time.perf_counter() > deadline:
            report["sizes"][key] = {"skipped": "time budget spent"}
            continue
        image, settings = test_image(height, width), settings_for(height, width)
        t0 = time.perf_counter()
        encoded = predictor.encode(image, settings=settings)
        logprobs = predictor.model.classify(encoded, embedding, settings)
        result = predictor.classify(encoded, vocabulary, settings=settings)
        synchronize(device)
        first_s = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            if times and time.perf_counter() + first_s > deadline:
                break
            t0 = time.perf_counter()
            predictor.predict(image, vocabulary, settings=settings)
            synchronize(device)
            times.append(time.perf_counter() - t0)
        entry = {
            "first_s": round(first_s, 3),
            "timed_runs": len(times),
            "images_per_s": round(len(times) / sum(times), 3) if times else None,
            "seconds_per_image": round(sum(times) / len(times), 3) if times else None,
        }
        outputs = (encoded.mask_logits, logprobs.exp(), torch.from_numpy(result.label_map))
        if reference is not None and key in reference:
            masks, probs, labels = reference[key]
            entry["mask_logits_max_rel_diff"] = max_rel(masks, outputs[0])
            entry["class_probabilities_max_rel_diff"] = max_rel(probs, outputs[1])
            entry["equal_panoptic_pixels"] = float((labels == outputs[2]).double().mean())
        elif precision == "fp32" and reference is not None:
            reference[key] = outputs
        report["sizes"][key] = entry
    report["peak_memory_gb"] = None if peak_gb(device) is None else round(peak_gb(device), 2)
    del predictor
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny model at small sizes (a smoke run, CPU)")
    parser.add_argument("--precisions", default=None, help="comma-separated (default fp32,fp16,bf16; on the CPU fp32,bf16)")
    parser.add_argument("--sizes", default=None, help="HxW,... (default 1024x1024,1024x1536; --tiny: 64x64,64x96)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size after the warm-up")
    parser.add_argument("--budget", type=float, default=420, help="seconds for the whole run")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    deadline = started + args.budget
    _import_project()
    from dataclasses import replace

    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config
    from napari_odise.vocabulary import Vocabulary

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("PyTorch sees no CUDA GPU here: use --device cpu --tiny for a smoke run", file=sys.stderr)
        return 2
    default_precisions = "fp32,fp16,bf16" if device.type == "cuda" else "fp32,bf16"
    precisions = (args.precisions or default_precisions).split(",")
    sizes = [tuple(int(v) for v in s.split("x")) for s in (args.sizes or ("64x64,64x96" if args.tiny else "1024x1024,1024x1536")).split(",")]
    config = get_config("tiny" if args.tiny else "official")
    if args.tiny:  # small crops, no resize: every path runs in seconds on a CPU
        config = replace(config, inference=config.inference.replace(crop_size=64))

        def settings_for(h, w):
            return config.inference.replace(short_edge=min(h, w), max_size=max(h, w))
    else:

        def settings_for(h, w):
            return config.inference  # the evaluation settings: short edge 1024, long edge at most 2560

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {device} ({gpu}), model {config.name} (random weights)")
    t0 = time.perf_counter()
    base = build_odise(config)  # float32, on the CPU; each precision gets its own copy on the device
    print(f"built {config.name} in {time.perf_counter() - t0:.1f} s ({sum(p.numel() for p in base.parameters()) / 1e6:.1f} M parameters)")
    vocabulary = Vocabulary.preset("coco")
    reference: dict = {}
    reports = []
    for precision in precisions:
        if time.perf_counter() > deadline:
            reports.append({"precision": precision, "skipped": "time budget spent"})
            continue
        reports.append(run_precision(base, precision, device, sizes, settings_for, vocabulary, args.repeats, deadline, reference))
        print_report(reports[-1])
    total = time.perf_counter() - started
    print(f"total {total:.0f} s wall (budget {args.budget:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": gpu, "torch": torch.__version__, "model": config.name, "reports": reports, "total_s": total}, handle, indent=2)
    return 0


def print_report(report: dict) -> None:
    if "skipped" in report:
        print(f"{report['precision']}: skipped ({report['skipped']})")
        return
    memory = report["peak_memory_gb"]
    memory_text = "n/a on CPU" if memory is None else f"{memory:.2f} GB"
    print(f"{report['precision']}: set up in {report['load_s']} s, peak memory {memory_text}")
    for size, entry in report["sizes"].items():
        if "skipped" in entry:
            print(f"  {size}: skipped ({entry['skipped']})")
            continue
        line = f"  {size}: {entry['images_per_s']} images/s ({entry['timed_runs']} timed runs; first {entry['first_s']} s)"
        if "mask_logits_max_rel_diff" in entry:
            line += (
                f"; vs fp32: mask logits max rel diff {entry['mask_logits_max_rel_diff']:.3g}, class probabilities "
                f"max rel diff {entry['class_probabilities_max_rel_diff']:.3g}, equal panoptic pixels "
                f"{entry['equal_panoptic_pixels']:.2%}"
            )
        print(line)


if __name__ == "__main__":
    sys.exit(main())
