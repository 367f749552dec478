"""Half precision against float32: agreement of the outputs, peak memory, time (random weights).

    python benchmarks/bench_precision.py --config tiny
    flock /tmp/odise_official.lock python benchmarks/bench_precision.py --config official --images parity

One float32 model with seeded random weights is written to a throw-away weights cache (as the
conversion of three stand-in source files), then each precision runs in its own process, loading
from that cache the way users load the released weights (float32: memory-mapped; bf16/fp16:
converted a tensor at a time), so each process's peak RSS is that precision's. Printed per image:
max relative difference of the mask logits and of the class probabilities (max |a - b| / max |a|),
share of equal panoptic pixels; per process: load and forward wall/CPU seconds, peak RSS; and the
load average. ``--classify-check`` also rounds the per-query tensors and the category head to the
half dtype to show what running the classify/ensemble/merge maths in it would change (the model
keeps them float32).

Images: "parity" is the reference trace's input (torch.randint(0, 256, (3, 512, 640)), seed
1234); astronaut, coffee and chelsea are scikit-image's samples. All run with the test-time
resize to the given size's short edge and long edge (512x640: the trace's 2 crops).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGES = ("parity", "astronaut", "coffee", "chelsea")


def image(name: str) -> np.ndarray:
    if name == "parity":
        import torch

        generator = torch.Generator().manual_seed(1234)
        return torch.randint(0, 256, (3, 512, 640), generator=generator, dtype=torch.uint8).permute(1, 2, 0).numpy()
    import skimage.data

    return getattr(skimage.data, name)()


def sources(home: Path) -> dict[str, Path]:
    """Stand-in source files: their sha256s name the cache files the random weights go into."""
    paths = {}
    for role in ("odise", "sd", "clip"):
        path = home / f"random-{role}.bin"
        if not path.exists():
            path.write_bytes(f"napari-odise benchmark stand-in for the {role} weights".encode())
        paths[role] = path
    return paths


def config_of(args):
    from napari_odise.model.config import get_config

    return get_config(args.config)


def prepare(args) -> None:
    from napari_odise.checkpoints.official_loading import cache_built_model
    from napari_odise.model.build import build_odise

    model = build_odise(config_of(args))
    cache_built_model(model, **sources(Path(os.environ["NAPARI_ODISE_HOME"])))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args) -> None:
    """One precision: load from the cache, run every image, save the outputs, print the costs."""
    import torch

    from napari_odise.checkpoints.official_loading import load_from_files
    from napari_odise.model.precision import DTYPES
    from napari_odise.predictor import Predictor
    from napari_odise.vocabulary import Vocabulary

    home = Path(os.environ["NAPARI_ODISE_HOME"])
    dtype = DTYPES[args.precision]
    wall, cpu = time.perf_counter(), cpu_seconds()
    model = load_from_files(config_of(args), progress=False, dtype=dtype, **sources(home))
    predictor = Predictor(model, device=args.device, precision=args.precision)
    costs = {"load": (time.perf_counter() - wall, cpu_seconds() - cpu)}
    vocabulary = Vocabulary.preset(args.vocab)
    h, w = (int(v) for v in args.size.split("x"))
    settings = predictor.settings.replace(short_edge=min(h, w), max_size=max(h, w))
    wall, cpu = time.perf_counter(), cpu_seconds()
    embedding = predictor.embed(vocabulary)
    costs["text"] = (time.perf_counter() - wall, cpu_seconds() - cpu)
    outputs = {}
    for name in args.images.split(","):
        wall, cpu = time.perf_counter(), cpu_seconds()
        encoded = predictor.encode(image(name), settings=settings)
        costs[name] = (time.perf_counter() - wall, cpu_seconds() - cpu)
        logprobs = predictor.model.classify(encoded, embedding, settings)
        result = predictor.classify(encoded, vocabulary, settings=settings)
        outputs[f"{name}.mask_logits"] = encoded.mask_logits.numpy()
        outputs[f"{name}.probs"] = logprobs.exp().numpy()
        outputs[f"{name}.panoptic"] = result.label_map
        if args.classify_check and dtype != torch.float32:
            probs, panoptic = half_classify(predictor.model, encoded, embedding, settings, dtype)
            outputs[f"{name}.half_maths_probs"], outputs[f"{name}.half_maths_panoptic"] = probs, panoptic
            outputs[f"{name}.half_maths_reference"] = outputs[f"{name}.probs"]
    np.savez(home / f"outputs-{args.precision}.npz", **outputs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for step, (seconds, cpu_s) in costs.items():
        print(f"{args.precision} {step}: {seconds:.1f} s wall, {cpu_s:.1f} CPU-s")
    print(f"{args.precision} peak RSS: {rss:.2f} GB")


def half_classify(model, encoded, embedding, settings, dtype):
    """Class probabilities and panoptic map with the classify inputs, the category head and the
    mask logits rounded to ``dtype`` (what keeping those maths in half precision would give)."""
    import copy
    import dataclasses

    def half(tensor):
        return None if tensor is None else tensor.to(dtype)

    encoded = dataclasses.replace(
        encoded,
        mask_embed=half(encoded.mask_embed),
        clip_mask_embed=half(encoded.clip_mask_embed),
        class_logits=half(encoded.class_logits),
        mask_logits=encoded.mask_logits.to(dtype).float(),
    )
    embedding = dataclasses.replace(embedding, raw=half(embedding.raw), photo=half(embedding.photo))
    original = model.category_head
    model.category_head = copy.deepcopy(original).to(dtype)
    try:
        logprobs = model.classify(encoded, embedding, settings).float()
    finally:
        model.category_head = original
    label_map, _ = model.panoptic(encoded, logprobs, embedding.isthing, settings)
    return logprobs.exp().numpy(), label_map.numpy()


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(a).max(), 1e-12))


def compare(home: Path, precision: str, images: list[str]) -> None:
    base = np.load(home / "outputs-fp32.npz")
    other = np.load(home / f"outputs-{precision}.npz")
    for name in images:
        masks = max_rel(base[f"{name}.mask_logits"], other[f"{name}.mask_logits"])
        probs = max_rel(base[f"{name}.probs"], other[f"{name}.probs"])
        equal = float((base[f"{name}.panoptic"] == other[f"{name}.panoptic"]).mean())
        print(
            f"{precision} vs fp32, {name}: mask logits max rel diff {masks:.3g}, "
            f"class probabilities max rel diff {probs:.3g}, equal panoptic pixels {equal:.2%}"
        )
        if f"{name}.half_maths_probs" in other:
            ref = other[f"{name}.half_maths_reference"]
            half_probs = max_rel(ref, other[f"{name}.half_maths_probs"])
            half_equal = float((other[f"{name}.panoptic"] == other[f"{name}.half_maths_panoptic"]).mean())
            print(
                f"  {name}: classify/merge maths in {precision} instead of fp32 (same encoded image): "
                f"class probabilities max rel diff {half_probs:.3g}, equal panoptic pixels {half_equal:.2%}"
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", choices=["tiny", "tiny-caption", "official", "official-caption"])
    parser.add_argument("--size", default="512x640", help="HxW the images are resized to fit (short edge, long edge)")
    parser.add_argument("--images", default=",".join(IMAGES), help=f"comma-separated, of {', '.join(IMAGES)}")
    parser.add_argument("--vocab", default="coco", help="vocabulary preset")
    parser.add_argument("--precisions", default="bf16", help="compared with fp32 (fp16 needs a GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--classify-check", action="store_true", help="also measure half-precision classify maths")
    parser.add_argument("--step", choices=["all", "prepare", "run"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.step == "prepare":
        return prepare(args)
    if args.step == "run":
        return run(args)

    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as folder:
        env = {**os.environ, "NAPARI_ODISE_HOME": folder, "HF_HUB_OFFLINE": "1"}
        forwarded = [
            "--config", args.config, "--size", args.size, "--images", args.images, "--vocab", args.vocab,
            "--device", args.device, "--threads", str(args.threads),
        ] + (["--classify-check"] if args.classify_check else [])
        me = [sys.executable, __file__, *forwarded]
        subprocess.run([*me, "--step", "prepare"], env=env, check=True)
        precisions = args.precisions.split(",")
        for precision in ["fp32", *precisions]:
            subprocess.run([*me, "--step", "run", "--precision", precision], env=env, check=True)
        for precision in precisions:
            compare(Path(folder), precision, args.images.split(","))
    print(
        f"{args.config} at {args.size}, vocabulary {args.vocab}: {time.perf_counter() - started:.0f} s wall in all; "
        f"load average before {json.dumps([round(x, 2) for x in load_before])}, "
        f"after {json.dumps([round(x, 2) for x in os.getloadavg()])}; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
