"""Fine-tuning for real: the tiny model learns synthetic scenes; resume; export loads as a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fast_tiny
from synthetic_scenes import VOCABULARY, write_dataset
from napari_odise.train.criterion import LossWeights
from napari_odise.train.finetune import Cancelled, FinetuneConfig, Finetuner

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_dataset")
    write_dataset(folder, 24, size=SIZE)
    return folder


def config(dataset, output, **changes):
    values = dict(
        dataset=str(dataset), output=str(output), base_model="tiny", steps=100, batch_size=4,
        image_size=SIZE, min_scale=0.7, max_scale=1.4, lr=1e-3, grad_clip=1.0, warmup_steps=10,
        schedule="cosine", val_every=0, checkpoint_every=0, device="cpu", val_fraction=0.25,
        loss=LossWeights(num_points=1024),
    )
    values.update(changes)
    return FinetuneConfig(**values)


def tiny():
    return fast_tiny(short_edge=SIZE, crop_size=SIZE)


def test_finetuning_learns_held_out_scenes(dataset, tmp_path):
    trainer = Finetuner(config(dataset, tmp_path / "run"), model=tiny())
    assert len(trainer.data.val_names) == 6 and len(trainer.data.train_names) == 18
    random_pq = trainer.evaluate()
    path = trainer.run()
    trained_pq = trainer.evaluate()
    print(f"\nheld-out PQ: random weights {random_pq:.3f}, after {trainer.step} steps {trained_pq:.3f}")
    assert random_pq < 0.05
    assert trained_pq > 0.25
    assert path.exists() and (tmp_path / "run" / "training.json").exists()
    first, last = trainer.history[0]["total"], np.mean([h["total"] for h in trainer.history[-10:]])
    assert last < 0.7 * first


def test_resume_continues_the_same_schedule(dataset, tmp_path):
    straight = Finetuner(config(dataset, tmp_path / "a", steps=6, checkpoint_every=3), model=tiny())
    straight.run()
    interrupted = Finetuner(config(dataset, tmp_path / "b", steps=6, checkpoint_every=3), model=tiny())
    with pytest.raises(Cancelled):
        interrupted.run(should_stop=lambda: interrupted.step >= 3)
    resumed = Finetuner(config(dataset, tmp_path / "b", steps=6, checkpoint_every=3), model=tiny())
    assert resumed.step == 3
    resumed.run()
    for key, value in straight.model.trainable_state_dict().items():
        torch.testing.assert_close(resumed.model.trainable_state_dict()[key], value, rtol=0, atol=0)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]


def test_export_is_official_layout_and_loads_like_a_model(dataset, tmp_path):
    from napari_odise import Predictor
    from napari_odise.model.key_mapping import ours_to_official

    trainer = Finetuner(config(dataset, tmp_path / "run", steps=2), model=tiny())
    path = trainer.run()
    saved = torch.load(path, weights_only=True)["model"]
    expected = {ours_to_official(k, "label") for k in trainer.model.trainable_state_dict()} | {"criterion.empty_weight"}
    assert set(saved) == expected
    assert saved["criterion.empty_weight"].shape == (134,)
    predictor = Predictor.from_pretrained(path, device="cpu")
    for key, value in trainer.model.trainable_state_dict().items():
        assert torch.equal(predictor.model.trainable_state_dict()[key], value.cpu())
    from napari_odise.vocabulary import Vocabulary

    assert Vocabulary.load(tmp_path / "run" / "vocabulary.json") == VOCABULARY


def test_caption_model_is_refused_with_a_reason(dataset, tmp_path):
    with pytest.raises(ValueError, match="caption model"):
        Finetuner(config(dataset, tmp_path / "c"), model=fast_tiny("tiny-caption"))


def test_cli_finetune_runs_and_resumes(dataset, tmp_path, capsys):
    from napari_odise.cli import main

    out = tmp_path / "cli"
    args = ["finetune", str(dataset), "--out", str(out), "--base-model", "tiny", "--image-size", "64",
            "--steps", "1", "--val-every", "0", "--num-points", "256", "--device", "cpu"]
    assert main(args) == 0
    assert "fine-tuned model" in capsys.readouterr().out
    assert (out / "model.pth").exists() and (out / "last.pt").exists()
    args[args.index("--steps") + 1] = "2"
    assert main(args) == 0  # resumes at step 1
    import json

    assert json.loads((out / "training.json").read_text())["steps"] == 2
