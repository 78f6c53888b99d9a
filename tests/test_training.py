"""Issue 4: the adapter training loop — only adapters learn, resume is exact, NaN stops cleanly."""

import pytest
import torch

import dreamcache_lite.training as training
from conftest import random_tiny_pipeline
from dreamcache_lite.checkpoints import list_checkpoints, load_checkpoint
from dreamcache_lite.lab.pairs import training_pairs
from dreamcache_lite.training import TrainConfig, read_loss_log, train_adapters


def small_config(tmp_path, **changes) -> TrainConfig:
    settings = dict(out=str(tmp_path / "run"), steps=4, batch_size=2, checkpoint_every=2, warmup_steps=1,
                    init="paper")
    return TrainConfig(**{**settings, **changes})


def train(cfg: TrainConfig, pipe, **options):
    """Train on the pairs the config names (the toy world)."""
    return train_adapters(cfg, training_pairs(cfg, pipe), pipe=pipe, **options)


def test_only_adapters_train(tmp_path):
    pipe = random_tiny_pipeline()
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    adapters = train(small_config(tmp_path, steps=2), pipe=pipe, progress=False)
    trained = adapters.state_dict()
    adapters.uninstall()
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
    fresh = random_tiny_pipeline()
    from dreamcache_lite.adapters import DreamCacheAdapters

    untrained = DreamCacheAdapters(fresh.unet, "paper", init="paper").state_dict()
    assert any(not torch.equal(trained[k], untrained[k]) for k in trained)
    steps, losses = read_loss_log(tmp_path / "run")
    assert steps == [1, 2] and all(loss > 0 for loss in losses)


def test_resume_gives_the_uninterrupted_weights(tmp_path):
    straight = train(small_config(tmp_path / "a"), pipe=random_tiny_pipeline(), progress=False)
    train(small_config(tmp_path / "b", steps=2), pipe=random_tiny_pipeline(), progress=False)
    resumed = train(small_config(tmp_path / "b"), pipe=random_tiny_pipeline(), progress=False)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_loss_log(tmp_path / "a" / "run") == read_loss_log(tmp_path / "b" / "run")


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real_loss, calls = training.training_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(training, "training_loss", poisoned)
    cfg = small_config(tmp_path)
    with pytest.raises(FloatingPointError, match="step 2"):
        train(cfg, pipe=random_tiny_pipeline(), progress=False)
    checkpoints = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [c.name for c in checkpoints] == ["step-000002"]
    pipe = random_tiny_pipeline()
    from dreamcache_lite.adapters import DreamCacheAdapters

    adapters = DreamCacheAdapters(pipe.unet, "paper")
    assert load_checkpoint(checkpoints[-1], {"adapters": adapters})["step"] == 2
    assert all(torch.isfinite(p).all() for p in adapters.parameters())


def test_a_batch_with_every_reference_dropped_is_harmless(tmp_path):
    adapters = train(small_config(tmp_path, steps=2, reference_dropout=1.0), pipe=random_tiny_pipeline(),
                              progress=False)
    assert all(torch.isfinite(p).all() for p in adapters.parameters())


def test_rendering_workers_change_nothing(tmp_path):
    inline = train(small_config(tmp_path / "a"), pipe=random_tiny_pipeline(), progress=False)
    workers = train(small_config(tmp_path / "b", workers=2), pipe=random_tiny_pipeline(), progress=False)
    a, b = inline.state_dict(), workers.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_subject_weight_reweights_only_where_the_subject_is():
    from diffusers import DDPMScheduler

    from dreamcache_lite.adapters import DreamCacheAdapters
    from dreamcache_lite.lab.pairs import ToyPairs

    pipe = random_tiny_pipeline()
    adapters = DreamCacheAdapters(pipe.unet, "paper", init="paper")
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = ToyPairs().batch(0, 2)
    assert batch["mask"].shape == (2, 1, 64, 64) and 0 < batch["mask"].mean() < 1

    def loss(batch, **changes):
        cfg = TrainConfig(reference_dropout=0.0, caption_dropout=0.0, **changes)
        with torch.no_grad():
            return training.training_loss(pipe, pipe.unet, adapters, batch, cfg, torch.Generator().manual_seed(0),
                                          schedule).item()

    plain = loss(batch)
    assert loss({**batch, "mask": torch.zeros_like(batch["mask"])}, subject_weight=4.0) == pytest.approx(plain)
    assert loss(batch, subject_weight=4.0) != pytest.approx(plain, rel=1e-3)


def test_snr_floor_weighs_the_noisiest_samples_as_if_their_snr_were_the_floor():
    from dreamcache_lite.cache import sd_noise_schedule

    schedule = sd_noise_schedule()
    t = torch.tensor([100, 400, 999])
    ratio = training.snr(schedule, t)
    assert ratio[0] > 1 > ratio[1] > 0.25 > ratio[2]
    pred, noise, mask = torch.ones(3, 4, 8, 8), torch.zeros(3, 4, 8, 8), torch.zeros(3, 1, 64, 64)

    def loss(**changes):
        return training._denoising_loss(pred, noise, t, mask, TrainConfig(**changes), schedule).item()

    assert loss() == pytest.approx(1.0)
    # Min-SNR 1: low noise down-weighted to SNR^-1, the rest 1; the floor lifts the noisiest to 0.25 / SNR
    assert loss(min_snr_gamma=1.0) == pytest.approx((1 / ratio[0] + 2).item() / 3)
    assert loss(min_snr_gamma=1.0, snr_floor=0.25) == pytest.approx((1 / ratio[0] + 1 + 0.25 / ratio[2]).item() / 3)


def test_colour_loss_counts_a_latent_cells_mean_on_the_subject_not_its_detail():
    ratio = torch.tensor([0.5])
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32, :32] = 1  # the subject: the top-left quarter
    noise = torch.zeros(1, 4, 16, 16)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1  # mean 0 over every 2x2 cell
    assert training.colour_loss(checker.expand(1, 4, 16, 16), noise, ratio, mask).item() == pytest.approx(0.0)
    offset = torch.zeros(1, 4, 16, 16)
    offset[..., :8, :8] = 0.1  # a wrong colour on the subject: x0 error 0.1 / sqrt(SNR)
    assert training.colour_loss(offset, noise, ratio, mask).item() == pytest.approx(0.01 / 0.5)
    elsewhere = torch.zeros(1, 4, 16, 16)
    elsewhere[..., 8:, 8:] = 1.0  # off the subject: not counted
    assert training.colour_loss(elsewhere, noise, ratio, mask).item() == pytest.approx(0.0)
    assert training.colour_loss(offset, noise, ratio, torch.zeros_like(mask)).item() == 0.0  # no subject: no NaN


def test_auxiliary_colour_term_is_logged_beside_the_denoising_loss(tmp_path):
    pipe = random_tiny_pipeline()
    train(small_config(tmp_path, steps=2, colour_weight=0.1, min_snr_gamma=1.0, snr_floor=0.25), pipe=pipe,
          progress=False)
    rows = training.loss_log(tmp_path / "run")
    assert len(rows) == 2 and all(r["colour"] > 0 and r["loss"] > 0 for r in rows)


def test_checkpoints_keep_the_newest_or_all(tmp_path):
    from dreamcache_lite.checkpoints import save_checkpoint

    model = torch.nn.Linear(2, 2)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / "all", step, {"m": model}, keep=0)
        save_checkpoint(tmp_path / "two", step, {"m": model}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path / "all")] == ["step-000001", "step-000002", "step-000003"]
    assert [p.name for p in list_checkpoints(tmp_path / "two")] == ["step-000002", "step-000003"]


def test_gradient_checkpointing_trains_the_same_adapters(tmp_path):
    """The backward pass re-runs checkpointed blocks: their adapters must still see the references."""
    plain = train(small_config(tmp_path / "a", steps=2), random_tiny_pipeline(), progress=False)
    checkpointed = train(small_config(tmp_path / "b", steps=2, gradient_checkpointing=True), random_tiny_pipeline(),
                         progress=False)
    a, b = plain.state_dict(), checkpointed.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_bf16_mixed_precision_trains(tmp_path):
    """Its own process: accelerate fixes the precision once per process."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    done = subprocess.run([sys.executable, "-m", "dreamcache_lite.cli", "train", "--steps", "2", "--batch-size", "2",
                           "--diagnostics-size", "0", "--mixed-precision", "bf16", "--out", str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    weights = load_file(tmp_path / "adapters.safetensors")
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in weights.values())
    assert all(loss > 0 for loss in read_loss_log(tmp_path)[1])


def test_correspondence_loss_rewards_attention_on_the_true_place(tmp_path):
    """The toy-world option: cross-entropy of the true reference cell under the recorded attention.
    Attention on the answer costs ~0, uniform attention log(tokens); trained with it the loss falls;
    pairs that do not know the answer are refused by name."""
    import math

    from dreamcache_lite.adapters import DreamCacheAdapters
    from dreamcache_lite.datasets import CopyPairs
    from dreamcache_lite.lab.pairs import ToyPairs

    pipe = random_tiny_pipeline()
    adapters = DreamCacheAdapters(pipe.unet, "paper")
    batch = CopyPairs(ToyPairs(seed=1)).batch(0, 2)
    batch["reference"] = batch["reference"].clamp(max=0.0)  # every cell "inked", so the subject's cells count
    from conftest import reference_cache

    cache = reference_cache(pipe.unet, batch=2)  # 16 x 16 latents: the grids of the toy world's 64 px pairs
    adapters.activate(cache)
    for proc in adapters.processors.values():
        n = math.prod(cache.grids[proc.layer])
        adapters.context.attention[proc.name] = torch.full((2, n, n), 1.0 / n)
    uniform = training.correspondence_loss(adapters, batch["correspondence"], batch["reference"]).item()
    for proc in adapters.processors.values():
        n = math.prod(cache.grids[proc.layer])
        adapters.context.attention[proc.name] = torch.eye(n).expand(2, n, n)  # a copy: query i reads token i
    exact = training.correspondence_loss(adapters, batch["correspondence"], batch["reference"]).item()
    for proc in adapters.processors.values():
        n = math.prod(cache.grids[proc.layer])
        adapters.context.attention[proc.name] = torch.full((2, n, n), 1.0 / n)
    any_colour = training.correspondence_loss(adapters, batch["correspondence"], batch["reference"],
                                              batch["target"], colour=100.0).item()
    adapters.uninstall()
    assert exact < 1e-6 and uniform > 1.0
    assert any_colour < 1e-5  # with every colour counted as right, every cell is an answer

    cfg = small_config(tmp_path, steps=6, correspondence_weight=1.0, copy_task=True, lr=3e-3, checkpoint_every=6)
    train(cfg, pipe=random_tiny_pipeline(), progress=False)
    rows = training.loss_log(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 7)) and all("correspondence" in r for r in rows)

    class NoAnswers:  # a folder dataset knows no correspondence
        def batch(self, step, size):
            out = dict(ToyPairs().batch(step, size))
            del out["correspondence"]
            return out

    with pytest.raises(ValueError, match="correspondence"):
        train_adapters(small_config(tmp_path / "b", correspondence_weight=1.0), NoAnswers(),
                       pipe=random_tiny_pipeline(), progress=False)


def test_a_checkpoint_rebuilt_from_the_runs_config_is_the_trained_adapters(tmp_path):
    """Checkpoints hold weights only; `read_config` + `adapters_for` rebuild what training built,
    options such as coarse_to_fine included (scripts/adapter_curve.py relies on it)."""
    cfg = small_config(tmp_path, steps=2, coarse_to_fine=1.0)
    trained = train(cfg, pipe=random_tiny_pipeline(), progress=False)
    rebuilt = training.adapters_for(random_tiny_pipeline().unet, training.read_config(cfg.out))
    load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1], {"adapters": rebuilt})
    assert rebuilt.metadata() == trained.metadata() and rebuilt.coarse_to_fine == 1.0
    a, b = trained.state_dict(), rebuilt.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
