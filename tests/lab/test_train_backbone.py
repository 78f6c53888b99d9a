"""Issue 3: the backbone's three training stages run, checkpoint and resume (a few steps, random data)."""

import pytest
import torch
from safetensors.torch import load_file

from dreamcache_lite.checkpoints import list_checkpoints
from dreamcache_lite.lab.train_backbone import (BackboneConfig, decayed_learning_rate, random_crop, reconstruction_psnr,
                                            train_backbone, update_ema)


def test_three_stages_run_checkpoint_and_resume(tmp_path):
    cfg = BackboneConfig(out=str(tmp_path), vae_steps=2, vae_batch=2, vae_crop=32, unet_steps=2, unet_batch=2,
                         unet_decay_from=1, decoder_steps=2, decoder_batch=2, checkpoint_every=1, threads=1)
    pipe, seconds = train_backbone(cfg, export_to=str(tmp_path / "export"))
    assert seconds > 0
    assert (tmp_path / "export" / "unet" / "config.json").is_file()
    assert 0 < reconstruction_psnr(pipe.vae, n=4) < 60
    for stage in ("vae", "unet", "decoder"):
        assert [p.name for p in list_checkpoints(tmp_path / stage)] == ["step-000001", "step-000002"]
    encoder = {k: v.clone() for k, v in pipe.vae.encoder.state_dict().items()}
    again, seconds_again = train_backbone(cfg)  # everything done: resumes at the end of each stage, trains nothing
    assert seconds_again == seconds  # the run's training time, read from its checkpoints, not this call's
    assert all(torch.equal(v, again.vae.encoder.state_dict()[k]) for k, v in encoder.items())
    assert all(torch.equal(v, again.unet.state_dict()[k]) for k, v in pipe.unet.state_dict().items())


def test_learning_rate_decay_and_crops():
    assert decayed_learning_rate(1.0, 0, 100, 75) == 1.0
    assert abs(decayed_learning_rate(1.0, 100, 100, 75) - 0.1) < 1e-9
    x = torch.arange(2 * 3 * 64 * 64, dtype=torch.float32).reshape(2, 3, 64, 64)
    crop = random_crop(x, 32, torch.Generator().manual_seed(0))
    assert crop.shape == (2, 3, 32, 32)
    assert torch.equal(random_crop(x, 64, torch.Generator()), x)


def test_rendering_workers_change_nothing(tmp_path):
    """The toy world rendered by DataLoader workers (how a GPU run keeps fed) gives the same weights."""
    small = dict(vae_steps=1, vae_batch=2, vae_crop=32, unet_steps=2, unet_batch=2, decoder_steps=1, decoder_batch=2,
                 threads=1)
    one, _ = train_backbone(BackboneConfig(out=str(tmp_path / "a"), workers=0, **small))
    two, _ = train_backbone(BackboneConfig(out=str(tmp_path / "b"), workers=2, **small))
    assert all(torch.equal(v, two.unet.state_dict()[k]) for k, v in one.unet.state_dict().items())


def test_wider_unet_with_ema_exports_the_average_and_resumes_exactly(tmp_path):
    """`unet_channels` builds a fresh UNet of that width; `ema_decay` exports the weights' moving
    average (checkpointed with the rest, so a resumed run ends where an uninterrupted one does)."""
    small = dict(vae_steps=1, vae_batch=2, vae_crop=32, unet_batch=2, decoder_steps=0, threads=1,
                 unet_channels="16,32,32", ema_decay=0.9, checkpoint_every=1)
    straight, _ = train_backbone(BackboneConfig(out=str(tmp_path / "a"), unet_steps=3, **small))
    assert list(straight.unet.config.block_out_channels) == [16, 32, 32]
    trained = load_file(str(list_checkpoints(tmp_path / "a" / "unet")[-1] / "unet.safetensors"))
    ema = straight.unet.state_dict()
    assert any(not torch.equal(ema[k], v) for k, v in trained.items())   # the average, not the last step
    _, interrupted = train_backbone(BackboneConfig(out=str(tmp_path / "b"), unet_steps=2, **small))
    resumed, seconds = train_backbone(BackboneConfig(out=str(tmp_path / "b"), unet_steps=3, **small))
    assert all(torch.equal(v, resumed.unet.state_dict()[k]) for k, v in ema.items())
    assert seconds > interrupted  # the clock goes on from the checkpoint's seconds


def test_update_ema_moves_towards_the_model():
    ema, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, model, 0.75)
    assert torch.allclose(ema.weight, 0.75 * before + 0.25 * model.weight)


def test_snr_shift_multiplies_every_snr_and_travels_with_the_exported_pipeline(tmp_path):
    """`snr_shift` k trains and samples with SNR'(t) = k SNR(t) (diffusers `trained_betas`); k = 1 is
    SD's schedule itself; the exported folder's scheduler reloads the shifted schedule."""
    from diffusers import DDIMScheduler

    from dreamcache_lite.lab.tiny_backbone import noise_schedule, training_scheduler

    def snr(scheduler):
        a = scheduler.alphas_cumprod.double()
        return a / (1 - a)

    assert noise_schedule(1.0) == noise_schedule()
    assert "trained_betas" not in noise_schedule(1.0)
    ratio = snr(training_scheduler(6.0)) / snr(training_scheduler(1.0))
    assert torch.allclose(ratio, torch.full_like(ratio, 6.0), rtol=1e-3)
    with pytest.raises(ValueError, match="snr_shift must be positive"):
        noise_schedule(0.0)
    cfg = BackboneConfig(out=str(tmp_path), vae_steps=1, vae_batch=2, vae_crop=32, unet_steps=1, unet_batch=2,
                         decoder_steps=0, threads=1, snr_shift=6.0)
    train_backbone(cfg, export_to=str(tmp_path / "export"))
    loaded = DDIMScheduler.from_pretrained(tmp_path / "export", subfolder="scheduler")
    assert torch.allclose(snr(loaded), snr(training_scheduler(6.0)))
