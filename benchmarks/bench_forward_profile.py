"""Where the image forward (``ODISE.encode``) spends its time, by component, and a code version
against another side by side in one run.

    flock /tmp/odise_official.lock python benchmarks/bench_forward_profile.py --sizes 512x640 1024
    flock /tmp/odise_official.lock python benchmarks/bench_forward_profile.py --before a544bf0 --sizes 512x640

Random weights (the official architecture builds offline). Each version runs in its own process
(the model is built once per process; ``--before REV`` exports that commit's ``src/`` with
``git archive``), one forward of the first size to warm up, then ``--repeats`` timed ones per size; with ``--before`` the
versions alternate (before, after, before, after, ...) so a change in the machine's load hits
both. Sizes: ``HxW`` runs that input as it is (512x640: 2 crops, the reference trace's run);
a bare number N is the evaluation resize of a 512x640 image (short edge N: 1024 -> 1024x1280, 6
crops). Per component it prints wall seconds and CPU seconds (all threads of the process), the
peak RSS and the load average; outputs of the two versions are compared (largest relative
difference of every output tensor of ``encode``). Each size also prints the forward's work in
TFLOP (counted on the meta device) and the fp32 matrix-multiply rate the machine gave right after
it, which says how far any fp32 implementation could go on this machine. ``--maskclip-ab N``
times MaskCLIP's full-square attention layout (as the official code, and this project before
model/maskclip_attention.py) against the current one on the same masks, N rounds alternating;
``--maskclip-only --maskclip-ab 2`` does that with CLIP alone (2 GB, a minute of CPU).
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

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = (
    "clip_image",  # the CLIP image tower on each crop (implicit captioner's input)
    "vae_encoder",
    "unet",
    "vae_decoder",  # truncated after its last tapped block
    "projector",  # bottleneck projections of the tapped features
    "pixel_decoder",
    "transformer_decoder",
    "maskclip",
)


def load_average() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Clock:
    """Wall and CPU seconds per component, summed over calls."""

    def __init__(self):
        self.wall = dict.fromkeys(COMPONENTS, 0.0)
        self.cpu = dict.fromkeys(COMPONENTS, 0.0)

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - wall
                self.cpu[name] += time.process_time() - cpu

        timed.__wrapped_by_clock__ = fn
        return timed

    def reset(self):
        for name in COMPONENTS:
            self.wall[name] = self.cpu[name] = 0.0


def instrument(model, clock: Clock) -> None:
    """Time the components by wrapping the calls ``ODISE.encode`` makes (instance attributes and
    the two module-level CLIP functions it looks up at call time)."""
    from napari_odise.model import clip_encoder

    clip_encoder.image_embedding = clock.wrap("clip_image", clip_encoder.image_embedding)
    clip_encoder.mask_embeddings = clock.wrap("maskclip", clip_encoder.mask_embeddings)
    features = model.features
    features.encode = clock.wrap("vae_encoder", features.encode)
    features.unet_features = clock.wrap("unet", features.unet_features)
    features.decoder_features = clock.wrap("vae_decoder", features.decoder_features)
    model.backbone.forward = clock.wrap("projector", model.backbone.forward)
    model.pixel_decoder.forward = clock.wrap("pixel_decoder", model.pixel_decoder.forward)
    model.decoder.forward = clock.wrap("transformer_decoder", model.decoder.forward)


def forward_tflop(config, size: str) -> float:
    """Floating-point operations of one encode at this size (PyTorch's FlopCounterMode on the
    meta device: shapes only, nothing computed): the work any implementation must do."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_odise.model import clip_encoder
    from napari_odise.model.build import build_odise
    from napari_odise.model.preprocess import resize_image

    import numpy as np

    (h, w), settings = settings_for(config, size)
    model = build_odise(config, device="meta")
    rh, rw = resize_image(np.zeros((h, w, 3), np.uint8), settings.short_edge, settings.max_size).shape[:2]
    div = settings.size_divisibility
    padded = torch.empty(1, 3, -(-rh // div) * div, -(-rw // div) * div, device="meta")
    with FlopCounterMode(display=False) as counter:
        features = model.backbone_features(padded, settings=settings)
        out = model.head_outputs(features)
        clip_encoder.mask_embeddings(model.clip, torch.empty(1, 3, rh, rw, device="meta"), out["mask_logits"], model.config.clip)
    return counter.get_total_flops() / 1e12


def matmul_gflops(seconds: float = 3.0) -> tuple[float, float]:
    """This machine's fp32 matrix-multiply rate now (2048^3, all threads): (per wall second, per CPU second)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        torch.mm(a, b)
        n += 1
    flop = n * 2 * 2048**3 / 1e9
    return flop / (time.perf_counter() - wall), flop / (time.process_time() - cpu)


def settings_for(config, size: str):
    if "x" in size:
        h, w = (int(v) for v in size.split("x"))
        return (h, w), config.inference.replace(short_edge=min(h, w), max_size=max(h, w))
    return (512, 640), config.inference.replace(short_edge=int(size))


def child(args) -> int:
    """One version: build, warm up, time; print as it goes; write the timings and the outputs."""
    sys.path.insert(0, args.src)
    import numpy as np
    import torch

    import napari_odise

    started = load_average()
    t0 = time.perf_counter()
    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config

    config = get_config(args.config)
    model = build_odise(config, device="cpu")
    try:  # what a CPU Predictor does on loading (code that has it)
        from napari_odise.cpu_threads import use_physical_cores

        use_physical_cores()
    except ImportError:
        pass
    build_s = time.perf_counter() - t0
    clock = Clock()
    instrument(model, clock)
    report = {
        "src": str(Path(napari_odise.__file__).parent),
        "threads": torch.get_num_threads(),
        "build_s": build_s,
        "load_before": started,
        "sizes": {},
    }
    print(f"\n[{args.label}] {report['src']}  threads {report['threads']}  build {build_s:.1f} s  load {started}", flush=True)
    outputs = {}
    for i, size in enumerate(args.sizes):
        (h, w), settings = settings_for(config, size)
        image = (np.random.default_rng(1234).random((h, w, 3)) * 255).astype(np.uint8)
        if i == 0 and not args.no_warmup:  # once per process: one-time set-up, first touch of the memory
            model.encode(image, settings=settings)
        runs = []
        for _ in range(args.repeats):
            clock.reset()
            load = os.getloadavg()[0]
            wall, cpu = time.perf_counter(), time.process_time()
            encoded = model.encode(image, settings=settings)
            runs.append(
                {
                    "wall": time.perf_counter() - wall,
                    "cpu": time.process_time() - cpu,
                    "load": (load + os.getloadavg()[0]) / 2,
                    "components": {n: (clock.wall[n], clock.cpu[n]) for n in COMPONENTS},
                }
            )
        best = min(runs, key=lambda r: r["wall"])
        best["peak_rss_gb"] = peak_rss_gb()
        best["all_walls"] = [r["wall"] for r in runs]
        best["padded"] = list(encoded.geometry.padded_size)
        report["sizes"][size] = best
        best["tflop"] = forward_tflop(config, size)
        best["matmul_gflops"] = matmul_gflops()
        print_size(size, best)
        outputs[size] = {
            "mask_logits": encoded.mask_logits,
            "mask_embed": encoded.mask_embed,
            "clip_mask_embed": encoded.clip_mask_embed,
        }
        if encoded.class_logits is not None:
            outputs[size]["class_logits"] = encoded.class_logits
        if i == 0 and args.maskclip_ab:
            maskclip_side_by_side(model, image, settings, encoded, args.maskclip_ab)
    report["load_after"] = load_average()
    print(f"  load average after: {report['load_after']}", flush=True)
    torch.save(outputs, args.out + ".pt")
    Path(args.out + ".json").write_text(json.dumps(report))
    return 0


def full_square_maskclip(clip, images01, mask_logits, cfg):
    """MaskCLIP as the official code lays it out (and this project did before it used
    model/maskclip_attention.py): open_clip's transformer over all Q + 1 + P tokens with a
    (B * heads, N, N) additive mask whose mask-token columns are -inf."""
    import torch
    from torch.nn import functional as F

    from napari_odise.model import clip_encoder

    visual, size = clip.visual, cfg.image_size
    images = F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False)
    masks = F.interpolate(mask_logits, size=(size, size), mode="bilinear", align_corners=False)
    pixels = clip_encoder.normalize_for_clip(images, cfg)
    patch_prob = F.max_pool2d(masks.sigmoid(), kernel_size=visual.conv1.kernel_size, stride=visual.conv1.stride)
    b, q = patch_prob.shape[:2]
    patch_blocked = (patch_prob < 0.5).flatten(2)
    tokens = clip_encoder._vision_tokens(visual, pixels)
    x = torch.cat([tokens[:, :1].expand(-1, q, -1), tokens], dim=1)
    n, p = x.shape[1], patch_blocked.shape[-1]
    blocked = torch.zeros(b, n, n, dtype=torch.bool, device=x.device)
    blocked[:, :, :q] = True
    blocked[:, :q, q + 1 :] = patch_blocked
    bias = torch.zeros(b, n, n, device=x.device).masked_fill_(blocked, float("-inf"))
    bias = bias.repeat_interleave(visual.transformer.resblocks[0].attn.num_heads, dim=0)
    with torch.no_grad():
        x = visual.transformer(x, attn_mask=bias)
        return (visual.ln_post(x[:, :q]) @ visual.proj).float()


def maskclip_side_by_side(model, image, settings, encoded, rounds: int) -> None:
    """Both MaskCLIP layouts on this image's masks, alternating, in this process."""
    import torch

    from napari_odise.model import clip_encoder

    current = clip_encoder.mask_embeddings
    while hasattr(current, "__wrapped_by_clock__"):
        current = current.__wrapped_by_clock__
    _, unpadded, _ = model.prepare(image, settings)
    logits = encoded.mask_logits[None]
    times = {"full square (before)": [], "maskclip_attention (after)": []}
    results = {}
    for _ in range(rounds):
        for name, fn in (("full square (before)", full_square_maskclip), ("maskclip_attention (after)", current)):
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                results[name] = fn(model.clip, unpadded, logits, model.config.clip)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu, os.getloadavg()[0]))
    print("  MaskCLIP side by side (same masks; best of rounds):")
    for name, runs in times.items():
        wall, cpu, load = min(runs)
        print(f"    {name:28s} {wall:6.1f} s wall {cpu:6.1f} s CPU (load {load:.2f})")
    old, new = results["full square (before)"], results["maskclip_attention (after)"]
    rel = ((new - old).abs().max() / old.abs().max()).item()
    print(f"    largest difference / largest value: {rel:.2e}", flush=True)


def maskclip_only(args) -> int:
    """MaskCLIP alone (CLIP's weights only, no lock needed): both layouts side by side on a
    512x640 random image with smooth random masks (about half of each query's patches blocked)."""
    import torch

    from napari_odise.model import clip_encoder
    from napari_odise.model.config import get_config

    cfg = get_config(args.config).clip
    torch.manual_seed(0)
    clip = clip_encoder.build_clip(cfg)
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 512, 640, generator=generator)
    coarse = torch.randn(1, 100, 8, 10, generator=generator) * 4
    logits = torch.nn.functional.interpolate(coarse, size=(128, 160), mode="bilinear")
    print(f"machine: {os.cpu_count()} CPUs, threads {torch.get_num_threads()}, load average {load_average()}")
    runs, results = {"full square (before)": [], "maskclip_attention (after)": []}, {}
    for _ in range(max(1, args.maskclip_ab)):
        for name, fn in (("full square (before)", full_square_maskclip), ("maskclip_attention (after)", clip_encoder.mask_embeddings)):
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                results[name] = fn(clip, image, logits, cfg)
            runs[name].append(f"{time.perf_counter() - wall:.1f} s wall / {time.process_time() - cpu:.1f} s CPU (load {os.getloadavg()[0]:.1f})")
    for name, lines in runs.items():
        print(f"{name:28s} {', '.join(lines)}")
    old, new = results["full square (before)"], results["maskclip_attention (after)"]
    print(f"largest difference / largest value: {((new - old).abs().max() / old.abs().max()).item():.2e}")
    return 0


def print_size(size: str, row: dict) -> None:
    padded = "x".join(map(str, row["padded"]))
    walls = ", ".join(f"{w:.1f}" for w in row["all_walls"])
    print(f"  {size} (padded {padded}): encode {row['wall']:.1f} s wall (runs: {walls}), {row['cpu']:.1f} s CPU, "
          f"load {row['load']:.2f}, peak RSS so far {row['peak_rss_gb']:.2f} GB")
    for name, (wall, cpu) in row["components"].items():
        print(f"    {name:20s} {wall:7.1f} s wall {cpu:7.1f} s CPU")
    mm_wall, mm_cpu = row["matmul_gflops"]
    print(f"    work: {row['tflop']:.2f} TFLOP -> {row['tflop'] * 1e3 / row['wall']:.0f} GFLOP/s per wall second, "
          f"{row['tflop'] * 1e3 / row['cpu']:.0f} per CPU second (a 2048^3 fp32 matmul right after: "
          f"{mm_wall:.0f} / {mm_cpu:.0f})")
    other_w = row["wall"] - sum(w for w, _ in row["components"].values())
    other_c = row["cpu"] - sum(c for _, c in row["components"].values())
    print(f"    {'other':20s} {other_w:7.1f} s wall {other_c:7.1f} s CPU", flush=True)


def export_source(rev: str, into: Path) -> Path:
    """``src/`` of commit ``rev`` (nothing in the working tree changes)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def compare(before: dict, after: dict) -> None:
    import torch

    for size in after:
        for name, new in after[size].items():
            old = before[size][name]
            rel = ((new - old).abs().max() / old.abs().max().clamp_min(1e-12)).item()
            print(f"  {size} {name:16s} largest difference / largest value: {rel:.2e}")
        _ = torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="official")
    parser.add_argument("--sizes", nargs="+", default=["512x640", "1024"])
    parser.add_argument("--repeats", type=int, default=1, help="timed forwards per size and version (the fastest is shown)")
    parser.add_argument("--before", metavar="REV", help="also run this commit's code, alternating with the working tree's")
    parser.add_argument("--rounds", type=int, default=1, help="with --before: before/after pairs of processes")
    parser.add_argument("--maskclip-ab", type=int, default=0, metavar="ROUNDS",
                        help="after the first size, time MaskCLIP's full-square layout against the current one")
    parser.add_argument("--maskclip-only", action="store_true",
                        help="only MaskCLIP's two layouts side by side (CLIP alone; --maskclip-ab rounds, default 1)")
    parser.add_argument("--no-warmup", action="store_true", help="time the first forward too (no warm-up)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--src", default=str(ROOT / "src"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.maskclip_only:
        return maskclip_only(args)

    print(f"machine: {os.cpu_count()} CPUs ({os.uname().machine}), load average {load_average()} at the start")
    with tempfile.TemporaryDirectory(prefix="odise-profile-") as tmp:
        tmp = Path(tmp)
        versions = [("after", str(ROOT / "src"))]
        if args.before:
            versions.insert(0, ("before", str(export_source(args.before, tmp))))
        results: dict[str, list] = {label: [] for label, _ in versions}
        for round_ in range(args.rounds if args.before else 1):
            for label, src in versions:
                out = str(tmp / f"{label}-{round_}")
                command = [sys.executable, __file__, "--child", "--src", src, "--out", out, "--config", args.config,
                           "--repeats", str(args.repeats), "--maskclip-ab", str(args.maskclip_ab),
                           *(["--no-warmup"] if args.no_warmup else []), "--sizes", *args.sizes]
                subprocess.run([*command, "--label", f"{label}, round {round_ + 1}"], check=True, cwd=tmp)
                results[label].append(out)
        if args.before:
            import torch

            print("\noutputs, after vs before (round 1):")
            compare(torch.load(results["before"][0] + ".pt"), torch.load(results["after"][0] + ".pt"))
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
