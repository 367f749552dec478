"""``napari-odise finetune DATASET --out DIR``: train ODISE's head on an exported dataset."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune ODISE's trainable head on an exported dataset (resumable)",
        description="Train the label model's head on a dataset written by `napari-odise export` or the "
        "Export widget. Stop it any time (Ctrl+C); the same command resumes from DIR/last.pt. The "
        "result, DIR/model.pth, loads like the official model: `--model DIR/model.pth`.",
    )
    parser.add_argument("dataset", help="dataset folder (annotations/panoptic.json, images/, vocabulary.json)")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, model.pth, training.json)")
    parser.add_argument("--base-model", default="official", help="official (default), tiny, or a model.pth to continue")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=1024, help="training crop size, a multiple of 64")
    parser.add_argument("--min-scale", type=float, default=0.1, help="large-scale jitter range (ODISE: 0.1-2.0)")
    parser.add_argument("--max-scale", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--grad-clip", type=float, default=0.01, help="max gradient norm (ODISE: 0.01; 0 = off)")
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--schedule", choices=["step", "cosine", "constant"], default="step")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32", help="mixed precision (GPU)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, ~30%% slower")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of images held out for PQ")
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--num-points", type=int, default=12544, help="points per mask for the mask losses")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-resume", action="store_true", help="start over even if DIR/last.pt exists")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

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
        trainer = Finetuner(config, resume=not args.no_resume)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"napari-odise finetune: {error}", file=sys.stderr)
        return 1
    bar = tqdm(total=config.steps, initial=trainer.step, desc="fine-tuning", unit="step")

    def report(step):
        postfix = {k.replace("loss_", ""): f"{v:.3f}" for k, v in step.losses.items()}
        if step.val_pq is not None:
            postfix["val PQ"] = f"{step.val_pq:.3f}"
        bar.set_postfix(postfix)
        bar.update(1)

    try:
        path = trainer.run(progress=report)
    except (KeyboardInterrupt, Cancelled):
        trainer.save_checkpoint()
        bar.close()
        print(f"stopped at step {trainer.step}; run the same command again to resume", file=sys.stderr)
        return 130
    bar.close()
    print(f"fine-tuned model: {path}")
    print(f"use it with: napari-odise segment IMAGES --out DIR --model {path}")
    return 0
