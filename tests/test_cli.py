"""The CLI contracts: cache -> generate round trip, train, clear errors (on a random tiny pipeline folder)."""

import json

import numpy as np
from PIL import Image

from conftest import random_tiny_pipeline
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.cli import main
from dreamcache_lite.manifest import verify_manifest, write_manifest


def test_cache_generate_round_trip(tmp_path, capsys):
    pipe = random_tiny_pipeline()
    pipe.save_pretrained(tmp_path / "backbone")
    DreamCacheAdapters(pipe.unet, "paper", init="paper").save(tmp_path / "adapters.safetensors")
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 16:48] = (30, 160, 90, 255)
    Image.fromarray(rgba).save(tmp_path / "ref.png")
    common = ["--backbone", str(tmp_path / "backbone"), "--adapters", str(tmp_path / "adapters.safetensors")]
    assert main(["cache", str(tmp_path / "ref.png"), "-o", str(tmp_path / "ref.safetensors"), *common]) == 0
    assert main(["generate", "--cache", str(tmp_path / "ref.safetensors"), "--prompt", "a ball on the beach",
                 "-n", "2", "--steps", "2", "-o", str(tmp_path / "grid.png"), *common]) == 0
    assert Image.open(tmp_path / "grid.png").size == (128, 64)
    assert main(["cache", str(tmp_path / "nope.png"), "-o", str(tmp_path / "x.safetensors"), *common]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_train_command_exports_with_manifest(tmp_path, capsys):
    pipe = random_tiny_pipeline()
    pipe.save_pretrained(tmp_path / "backbone")
    out, export = tmp_path / "run", tmp_path / "export"
    assert main(["train", "--backbone", str(tmp_path / "backbone"), "--steps", "2", "--batch-size", "2",
                 "--out", str(out), "--export", str(export), "--diagnostics-size", "2"]) == 0
    manifest = verify_manifest(export)
    assert manifest["steps"] == 2 and "adapters.safetensors" in manifest["files"]
    assert (out / "loss.png").is_file()
    report = json.loads((out / "diagnostics.json").read_text())  # beside the loss log
    assert set(report["reference_gain"]) == {"pairs", "copy"} and report["attention_entropy"]
    assert "reference gain (copy)" in capsys.readouterr().out


def test_manifest_names_a_corrupted_file(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"abc")
    write_manifest(tmp_path, command="test")
    (tmp_path / "w.bin").write_bytes(b"abd")
    try:
        verify_manifest(tmp_path)
    except ValueError as err:
        assert "w.bin" in str(err)
    else:
        raise AssertionError("corruption went unnoticed")
    (tmp_path / "w.bin").unlink()
    try:
        verify_manifest(tmp_path)
    except FileNotFoundError as err:
        assert "w.bin" in str(err)
    else:
        raise AssertionError("a missing file went unnoticed")
    assert json.loads((tmp_path / "manifest.json").read_text())["command"] == "test"


def test_evaluate_sdedit_prints_identity_gain(tmp_path, capsys):
    """The contract `evaluate --method text --sdedit 0.3 --fast --json`: the usual keys plus identity_gain."""
    import torch

    from dreamcache_lite.lab.oracle import Oracle

    random_tiny_pipeline().save_pretrained(tmp_path / "backbone")
    torch.manual_seed(0)
    Oracle().eval().save(tmp_path / "oracle.safetensors")  # untrained: the machinery is under test
    assert main(["evaluate", "--method", "text", "--sdedit", "0.3", "--fast", "--json", "--identities", "1",
                 "--steps", "2", "--backbone", str(tmp_path / "backbone"),
                 "--oracle", str(tmp_path / "oracle.safetensors")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"class_accuracy", "prompt_fidelity", "subject_fidelity", "embedding_cosine", "images",
            "identity_gain", "text_subject_fidelity", "vae_subject_fidelity"} <= set(summary)
    assert summary["sdedit"] == 0.3 and summary["images"] == 25


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_user_errors_end_in_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    """The error table: each mistake a user can make, the words the one line must contain."""
    import huggingface_hub

    pipe = random_tiny_pipeline()
    pipe.save_pretrained(tmp_path / "backbone")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    from conftest import make_unet
    wrong = DreamCacheAdapters(make_unet("tiny", layers_per_block=1), "paper", init="paper")
    wrong.save(tmp_path / "other_backbone.safetensors")
    folder = ["--backbone", str(tmp_path / "backbone")]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    capsys.readouterr()  # the set-up's own output
    table = [
        (["generate", "--prompt", "a ball", "--backbone", "sd15"], ["cannot load backbone", "local copy"]),
        (["generate", "--prompt", "a ball", "--backbone", str(tmp_path / "nowhere")], ["nowhere"]),
        (["convert-official", str(tmp_path / "picture.png"), str(tmp_path / "out.safetensors")],
         ["picture.png", "not a PyTorch checkpoint"]),
        (["generate", "--prompt", "a ball", *folder, "--adapters", str(tmp_path / "picture.png")], ["picture.png"]),
        (["generate", "--prompt", "a ball", *folder, "--adapters", str(tmp_path / "other_backbone.safetensors")],
         ["other_backbone.safetensors"]),
        (["cache", str(tmp_path / "missing.png"), "-o", str(tmp_path / "c.safetensors"), *folder], ["missing.png"]),
    ]
    for argv, needles in table:
        _one_line_error(capsys, argv, *needles)


def test_out_of_memory_names_the_fix(capsys, monkeypatch):
    import dreamcache_lite.cli as cli

    def out_of_memory(args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(details)")
    monkeypatch.setattr(cli, "cmd_generate", out_of_memory)  # the parser is built at each call
    _one_line_error(capsys, ["generate", "--prompt", "a ball"], "out of accelerator memory", "lower the batch")
