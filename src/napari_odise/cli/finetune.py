"""``napari-odise finetune DATASET --out DIR``: train ODISE's head on an exported dataset.

Exit codes: 0 trained; 1 refused (a dataset, setting or model that cannot be used, a loss that
diverged); 130 stopped (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager

from napari_odise.cli.refusals import INTERRUPTED, refuse
from napari_odise.models import DEVICES, PRECISIONS



def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune ODISE's trainable head on an exported dataset (resumable)",
        description="Train the label model's head on a dataset written by `napari-odise export` or the "
        "Export widget. Stop it any time (Ctrl+C stops after the current step); the same command resumes "
        "from DIR/last.pt. The result, DIR/model.pth, loads like the official model: `--model DIR/model.pth`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("dataset", help="dataset folder (annotations/panoptic.json, images/, vocabulary.json)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (last.pt, model.pth, training.json)")
    parser.add_argument("--base-model", default="official", help="official, tiny (random weights, for trials), or a model.pth to continue from")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps in all (a resumed run counts from where it stopped)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step")
    parser.add_argument("--image-size", type=int, default=1024, metavar="PX", help="training crop size, a multiple of 64")
    parser.add_argument("--min-scale", type=float, default=0.1, help="large-scale jitter: smallest image scale (ODISE: 0.1)")
    parser.add_argument("--max-scale", type=float, default=2.0, help="large-scale jitter: largest image scale (ODISE: 2.0)")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (not on norms and biases)")
    parser.add_argument("--grad-clip", type=float, default=0.01, help="max gradient norm (ODISE: 0.01; 0 = off)")
    parser.add_argument("--warmup-steps", type=int, default=50, help="steps of linear learning-rate warm-up")
    parser.add_argument("--schedule", choices=["step", "cosine", "constant"], default="step", help="learning rate after warm-up (step: ODISE's)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="mixed precision (GPU only)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, about 30%% slower")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of images held out for the validation PQ")
    parser.add_argument("--val-every", type=int, default=500, help="steps between validation PQs (0 = never)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between saves of DIR/last.pt (0 = only when stopped or done)")
    parser.add_argument("--num-points", type=int, default=12544, help="points sampled per mask for the mask losses")
    parser.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)}, cuda:1, ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the sampling and the augmentation")
    parser.add_argument("--no-resume", action="store_true", help="start over even if DIR/last.pt exists")
    parser.set_defaults(func=run, refused_status=1)


def check_arguments(args) -> None:
    """What can be checked without PyTorch, before it loads: the dataset folder, the base model,
    sizes and fractions. Raises a UserError that says what to fix."""
    from pathlib import Path

    from napari_odise.errors import InvalidInputError, MissingFileError
    from napari_odise.io.layout import DatasetLayout
    from napari_odise.models import ModelSpec

    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise MissingFileError(f"no dataset folder at {dataset}: give a folder written by `napari-odise export` or the Export widget")
    if not DatasetLayout(dataset).panoptic_json.is_file():
        raise MissingFileError(
            f"{dataset} is not a napari-odise dataset (no annotations/panoptic.json): export one with "
            "`napari-odise export` or the Export widget"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InvalidInputError(f"--out {args.out} is a file: give a folder (it is created if missing)")
    ModelSpec(args.base_model, args.device)  # a known model name or an existing checkpoint file
    for name in ("steps", "batch_size", "num_points"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("val_every", "checkpoint_every"):
        if getattr(args, name) < 0:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be 0 (never) or more, got {getattr(args, name)}")
    if args.image_size < 64 or args.image_size % 64:
        raise InvalidInputError(f"--image-size must be a multiple of 64, got {args.image_size}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise InvalidInputError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if not 0.0 < args.min_scale <= args.max_scale:
        raise InvalidInputError(f"need 0 < --min-scale <= --max-scale, got {args.min_scale} and {args.max_scale}")
    if args.precision != "fp32" and args.device == "cpu":
        raise InvalidInputError("mixed precision training needs a CUDA GPU; use --precision fp32 on the CPU")


def run(args) -> int:
    from napari_odise.errors import UserError

    try:
        check_arguments(args)
    except UserError as error:
        return refuse(error, status=1)
    # Only now PyTorch and the model: a wrong path is reported in a second, not after the import.
    from tqdm import tqdm

    from napari_odise.cli.busy import Busy

    from napari_odise.train.criterion import LossWeights
    from napari_odise.train.finetune import Cancelled, FinetuneConfig, Finetuner

    config = FinetuneConfig(
        dataset=args.dataset,
        output=args.out,
        base_model=args.base_model,
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.image_size,
        min_scale=args.min_scale,
        max_scale=args.max_scale,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip or None,
        warmup_steps=args.warmup_steps,
        schedule=args.schedule,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        val_fraction=args.val_fraction,
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device,
        loss=LossWeights(num_points=args.num_points),
    )
    try:
        with Busy(f"loading the dataset and model {args.base_model} on {args.device}"):
            trainer = Finetuner(config, resume=not args.no_resume)
    except OSError as error:  # the file system refused the dataset or the output folder
        return refuse(error, status=1)
    bar = tqdm(total=config.steps, initial=trainer.step, desc="fine-tuning", unit="step")

    def report(step):
        postfix = {k.replace("loss_", ""): f"{v:.3f}" for k, v in step.losses.items()}
        if step.val_pq is not None:
            postfix["val PQ"] = f"{step.val_pq:.3f}"
        bar.set_postfix(postfix)
        bar.update(1)

    with stop_requests() as should_stop:
        try:
            path = trainer.run(progress=report, should_stop=should_stop)
        except Cancelled:  # run() stopped at a step boundary and saved it
            return stopped(trainer, saved=True)
        except KeyboardInterrupt:
            return stopped(trainer, saved=False)
        finally:
            bar.close()
    print(f"fine-tuned model: {path}")
    print(f"use it with: napari-odise segment IMAGES --out DIR --model {path}")
    return 0


@contextmanager
def stop_requests():
    """Ctrl+C asks the loop to stop at the next step boundary, so the checkpoint it saves resumes
    exactly as an uninterrupted run would go on; a second Ctrl+C stops at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set  # signal handlers can only be set in the main thread
        return

    def handle(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print("\nstopping after this step (Ctrl+C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def stopped(trainer, saved: bool) -> int:
    """Save the stop if it is a step boundary (a cut-short update is not: resuming it would drift)."""
    if not saved and trainer.at_step_boundary:
        trainer.save_checkpoint()
        saved = True
    if saved:
        print(f"stopped at step {trainer.step}; run the same command again to resume", file=sys.stderr)
    else:
        print(
            f"stopped during step {trainer.step + 1}, whose half-done update is not saved: run the same "
            f"command again to resume from the last checkpoint ({trainer.checkpoint_path}), if any",
            file=sys.stderr,
        )
    return INTERRUPTED
