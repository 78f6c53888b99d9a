"""Issue 5 (part 4): DreamBench layout, resumable generation and DINO / CLIP-I / CLIP-T scoring.

Fully offline: a synthetic DreamBench copy in the released file format, tiny random ViT / CLIP models
built locally (a character-level CLIP tokenizer written into tmp) and a tiny random SD pipeline.
"""

import json
import os
import string

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_tiny_pipeline
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.cli import main
from dreamcache_lite.lab import dreambench as db

# The released prompts_and_classes.txt format (headers, CSV classes, Python-style prompt lines), abridged.
PROMPTS_AND_CLASSES = """Classes

subject_name,class
cat2,cat
dog,dog
teapot,teapot

Prompts

Object Prompts

prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a {0} {1} on top of pink fabric'.format(unique_token, class_token),
'a red {0} {1}'.format(unique_token, class_token)
]

Live Subject Prompts

prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a {0} {1} wearing a red hat'.format(unique_token, class_token),
'a {0} {1} in a chef outfit'.format(unique_token, class_token)
]
"""
REFERENCES = {"cat2": 1, "dog": 2, "teapot": 1}


def noise_image(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def make_bench(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / db.PROMPTS_FILE).write_text(PROMPTS_AND_CLASSES)
    for s, (name, count) in enumerate(REFERENCES.items()):
        (root / name).mkdir()
        for i in range(count):
            noise_image(10 * s + i).save(root / name / f"{i:02d}.jpg")
    return root


# -- layout -------------------------------------------------------------------------------------------
def test_layout_reads_the_released_format(tmp_path):
    bench = db.load_dreambench(make_bench(tmp_path / "dataset"))
    assert list(bench.subjects) == ["cat2", "dog", "teapot"]
    assert [s.live for s in bench.subjects.values()] == [True, True, False]
    assert bench.subjects["teapot"].class_name == "teapot"
    assert [p.name for p in bench.subjects["dog"].references] == ["00.jpg", "01.jpg"]
    assert bench.templates("dog") == ["a {0} in the jungle", "a {0} wearing a red hat", "a {0} in a chef outfit"]
    assert bench.templates("teapot")[2] == "a red {0}"
    assert db.fill(bench.templates("dog")[1], "sks dog") == "a sks dog wearing a red hat"


def test_layout_reads_plain_templates():
    text = "Classes:\nbear_plushie,stuffed animal\nObject prompts:\na {0} in the snow\n\"a {0} on the beach\",\n"
    classes, objects, live = db.parse_prompts_and_classes(text)
    assert classes == {"bear_plushie": "stuffed animal"}
    assert objects == ["a {0} in the snow", "a {0} on the beach"] and live == []


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts_and_classes.txt"):
        db.load_dreambench(tmp_path)
    root = make_bench(tmp_path / "dataset")
    for path in (root / "teapot").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=str(root / "teapot")):
        db.load_dreambench(root)


# -- generation ---------------------------------------------------------------------------------------
class FakeGenerator:
    """Solid images, one colour per call; records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, reference, prompts, seed, n):
        self.calls.append((reference.size, list(prompts), seed, n))
        return [Image.new("RGB", (16, 16), (len(self.calls), 0, 0)) for _ in range(len(prompts) * n)]


def test_generation_writes_every_image_and_resumes(tmp_path):
    root, out, fake = make_bench(tmp_path / "dataset"), tmp_path / "out", FakeGenerator()
    counts = db.generate_dreambench(fake, root, out, images_per_prompt=2, prompt_limit=2, seed=7,
                                    prompts_per_call=1, progress=False)
    assert counts == {"generated": 12, "existing": 0}
    assert sorted(p.name for p in (out / "dog").iterdir()) == ["00_0.png", "00_1.png", "01_0.png", "01_1.png"]
    assert fake.calls[2] == ((40, 40), ["a dog in the jungle"], 7, 2)  # square reference, class noun
    assert fake.calls[5][1] == ["a teapot on top of pink fabric"]

    (out / "dog" / "01_1.png").unlink()
    fake.calls.clear()
    counts = db.generate_dreambench(fake, root, out, images_per_prompt=2, prompt_limit=2, seed=7,
                                    token="sks", progress=False)
    assert counts == {"generated": 2, "existing": 10}
    assert fake.calls == [((40, 40), ["a sks dog wearing a red hat"], 7, 2)]
    assert not list(out.glob("*/*.partial"))


def test_generation_checks_subjects_and_image_count(tmp_path):
    root = make_bench(tmp_path / "dataset")
    with pytest.raises(ValueError, match="unknown DreamBench subjects"):
        db.generate_dreambench(FakeGenerator(), root, tmp_path / "out", subjects=["dog4"], progress=False)
    with pytest.raises(ValueError, match="returned 1 images"):
        db.generate_dreambench(lambda ref, prompts, seed, n: [ref], root, tmp_path / "out", progress=False)


# -- scoring ------------------------------------------------------------------------------------------
def tiny_models(folder):
    """Random ViT (DINO-shaped) and CLIP models with a character-level CLIP tokenizer: no download."""
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer, ViTConfig,
                              ViTModel)

    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    vocab = ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                             image_size=32, patch_size=16), add_pooling_layer=False)
    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
    text = dict(small, vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                pad_token_id=1)
    clip = CLIPModel(CLIPConfig(text_config=text,
                                vision_config=dict(small, image_size=32, patch_size=16), projection_dim=16))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    return vit, clip, processor


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    vit, clip, processor = tiny_models(tmp_path_factory.mktemp("tokenizer"))
    return db.DreamBenchScorer(vit, clip, clip_processor=processor)


def write_generated(root, out):
    """dog: its first photo (prompt 0) and noise (prompt 2); teapot: its only photo (prompt 1)."""
    (out / "dog").mkdir(parents=True)
    (out / "teapot").mkdir()
    db.load_image(root / "dog" / "00.jpg").save(out / "dog" / "00_0.png")
    noise_image(99).save(out / "dog" / "02_0.png")
    db.load_image(root / "teapot" / "00.jpg").save(out / "teapot" / "01_0.png")


def test_scores_follow_the_definitions(tmp_path, scorer):
    root, out = make_bench(tmp_path / "dataset"), tmp_path / "out"
    write_generated(root, out)
    report = scorer.score(root, out)
    assert set(report) == {"dino", "clip_i", "clip_t", "images", "per_subject"} and report["images"] == 3
    assert set(report["per_subject"]) == {"dog", "teapot"}  # cat2 has no images: left out
    teapot = report["per_subject"]["teapot"]
    assert teapot["dino"] == pytest.approx(1.0, abs=1e-5) and teapot["clip_i"] == pytest.approx(1.0, abs=1e-5)

    photos = [db.load_image(root / "dog" / f"0{i}.jpg") for i in range(2)]
    sims = scorer.similarities([photos[0], noise_image(99)], photos, ["a dog", "a dog"])
    for key in ("dino", "clip_i"):  # the mean over ALL photos of the subject, not only the reference
        same = (scorer.dino_embeddings if key == "dino" else scorer.clip_image_embeddings)(photos)
        assert sims[key][0] == pytest.approx((1 + same[0] @ same[1]) / 2, abs=1e-6)
        assert sims[key][1] < teapot[key] - 1e-4  # a different image scores lower than an identical one
    values = [report[k] for k in ("dino", "clip_i", "clip_t")] + \
        [v for subject in report["per_subject"].values() for v in subject.values()]
    assert all(-1 <= v <= 1 for v in values)
    assert report["dino"] == pytest.approx(np.mean([sims["dino"][0], sims["dino"][1], teapot["dino"]]), abs=1e-6)
    assert scorer.score(root, out) == report  # deterministic


def test_clip_t_reads_the_class_noun(tmp_path, scorer, monkeypatch):
    root, out = make_bench(tmp_path / "dataset"), tmp_path / "out"
    write_generated(root, out)
    seen, embed = [], scorer.clip_text_embeddings
    monkeypatch.setattr(scorer, "clip_text_embeddings", lambda texts: seen.extend(texts) or embed(texts))
    scorer.score(root, out)
    assert seen == ["a dog in the jungle", "a dog in a chef outfit", "a teapot on top of pink fabric"]


def test_score_names_missing_images(tmp_path, scorer):
    root = make_bench(tmp_path / "dataset")
    with pytest.raises(FileNotFoundError, match="no generated images"):
        scorer.score(root, root)
    (tmp_path / "bad" / "dog").mkdir(parents=True)
    noise_image(1).save(tmp_path / "bad" / "dog" / "07_0.png")
    with pytest.raises(ValueError, match="prompt 7"):
        scorer.score(root, tmp_path / "bad")


# -- command line -------------------------------------------------------------------------------------
def test_cli_score_prints_one_json_object(tmp_path, capsys):
    vit, clip, processor = tiny_models(tmp_path / "tokenizer")
    from transformers import ViTImageProcessor

    vit.save_pretrained(tmp_path / "dino")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "dino")
    clip.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    root, out = make_bench(tmp_path / "dataset"), tmp_path / "out"
    write_generated(root, out)
    common = ["dreambench", "score", "--root", str(root), "--generated", str(out), "--dino", str(tmp_path / "dino"),
              "--clip", str(tmp_path / "clip"), "--device", "cpu", "--json"]
    assert main(common) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"dino", "clip_i", "clip_t", "images"} and report["images"] == 3
    assert main(common + ["--per-subject"]) == 0
    assert set(json.loads(capsys.readouterr().out)["per_subject"]) == {"dog", "teapot"}
    assert main(["dreambench", "score", "--root", str(tmp_path), "--generated", str(out), "--json"]) == 2
    assert "prompts_and_classes.txt" in capsys.readouterr().err


def test_cli_generate_wires_the_pipeline(tmp_path, capsys):
    pipe = random_tiny_pipeline()
    pipe.save_pretrained(tmp_path / "backbone")
    DreamCacheAdapters(pipe.unet, "paper", init="paper").save(tmp_path / "adapters.safetensors")
    root, out = make_bench(tmp_path / "dataset"), tmp_path / "out"
    args = ["dreambench", "generate", "--root", str(root), "--out", str(out), "--backbone", str(tmp_path / "backbone"),
            "--adapters", str(tmp_path / "adapters.safetensors"), "--subjects", "dog,teapot", "--prompt-limit", "1",
            "--images-per-prompt", "2", "--steps", "1", "--device", "cpu"]
    assert main(args) == 0
    assert "4 image(s) generated" in capsys.readouterr().out
    assert Image.open(out / "dog" / "00_1.png").size == (64, 64)
    assert main(args) == 0
    assert "0 image(s) generated, 4 already there" in capsys.readouterr().out
