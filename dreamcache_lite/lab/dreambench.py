"""DreamBench for real backbones: generate its images with any method, score them as the papers do.

DreamBench (DreamBooth, Ruiz et al. 2023; the `dataset/` folder of github.com/google/dreambooth) has
30 subjects of 15 classes, 21 objects and 9 live subjects (cat, cat2, dog, dog2, dog3, dog5, dog6,
dog7, dog8), 4-6 photos each (`<subject>/00.jpg`, ...), and `prompts_and_classes.txt`: the class of
every subject and 25 prompts for objects, 25 for live subjects. The DreamCache protocol: one
reference per subject (its first photo), 25 prompts x 4 images = 3,000 images, then

- DINO   = mean over generated images g of  mean over r of cos(DINO(g), DINO(r)), where DINO(x) is
           the CLS token of `last_hidden_state` of ViT-S/16 (facebook/dino-vits16) and r runs over
           ALL real photos of g's subject, not only the reference;
- CLIP-I = the same with CLIP ViT-B/32 image embeddings (openai/clip-vit-base-patch32);
- CLIP-T = mean over g of cos(CLIP text embedding of g's prompt with the class noun in the subject's
           place, e.g. "a dog in the jungle", CLIP image embedding of g): the raw cosine (no x100, no x2.5).

On a GPU machine with the SD 2.1 base weights and trained adapters:

    dreamcache-lite dreambench generate --root dreambooth/dataset --out runs/dreambench/sd21 \\
        --backbone sd21 --adapters dreamcache_sd21.safetensors
    dreamcache-lite dreambench score --root dreambooth/dataset --generated runs/dreambench/sd21 --json

Generation is resumable (existing images are kept). The reference photo is cached as it is, center
cropped to a square (the benchmark ships no masks). Without --adapters the images are text-only; any
other method plugs into `generate_dreambench` as a plain callable, and `score` reads any method's folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from ..pipeline import GenerationConfig

PROMPTS_FILE = "prompts_and_classes.txt"
LIVE_CLASSES = ("cat", "dog")  # DreamBench's live subjects are its cats and dogs
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
GENERATED_NAME = re.compile(r"^(\d+)_(\d+)\.png$")

Generator = Callable[[Image.Image, list, int, int], list]  # (reference, prompts, seed, n) -> images
PAPER_SETTINGS = GenerationConfig(steps=50, scheduler="ddim", text_scale=7.5, ref_scale=0.4)  # DreamCache's table


# -- the layout ---------------------------------------------------------------------------------------
@dataclass
class Subject:
    name: str
    class_name: str
    live: bool
    references: list[Path] = field(default_factory=list)  # every real photo, sorted


@dataclass
class DreamBench:
    root: Path
    subjects: dict[str, Subject]
    object_prompts: list[str]  # templates: "{0}" is where the subject goes
    live_prompts: list[str]

    def templates(self, subject: str) -> list[str]:
        return self.live_prompts if self.subjects[subject].live else self.object_prompts


def parse_prompts_and_classes(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(subject -> class, object prompt templates, live prompt templates) from the file's text.

    Tolerant on purpose: the released file writes prompts as Python lines
    ("'a {0} {1} in the jungle'.format(unique_token, class_token),"); plain lines and "{0}"-only
    templates are read too. Every template comes out with a single "{0}" for the subject.
    """
    classes, prompts, section = {}, {"object": [], "live": []}, None
    for raw in text.splitlines():
        line = raw.strip()
        header = line.strip("#:= ").lower()
        if header == "classes":
            section = "classes"
        elif "prompt" in header and "{" not in line and "[" not in line:
            section = "live" if "live" in header else "object"
        elif section == "classes" and "," in line and line.lower() != "subject_name,class":
            name, class_name = (part.strip() for part in line.split(",", 1))
            classes[name] = class_name
        elif section in prompts and "{" in line:
            prompts[section].append(_template(line))
    if not classes or not prompts["object"]:
        raise ValueError("no subject classes or no object prompts found: is this DreamBench's " + PROMPTS_FILE + "?")
    return classes, prompts["object"], prompts["live"]


def _template(line: str) -> str:
    """One prompt line -> "a {0} in the jungle" (unique token and class merged into one slot)."""
    quoted = re.match(r"""\s*(['"])(.*?)\1""", line)
    text = quoted.group(2) if quoted else line.rstrip(",").strip()
    return text.replace("{0} {1}", "{0}").replace("{1}", "{0}")


def load_dreambench(root) -> DreamBench:
    """Read a DreamBench folder; a missing file or subject folder is named in the error."""
    root = Path(root)
    path = root / PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"DreamBench prompt file not found: {path} (pass google/dreambooth's dataset/)")
    classes, object_prompts, live_prompts = parse_prompts_and_classes(path.read_text(encoding="utf-8"))
    subjects = {}
    for name, class_name in classes.items():
        folder = root / name
        references = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not references:
            raise FileNotFoundError(f"DreamBench subject {name!r}: no images in {folder}")
        subjects[name] = Subject(name, class_name, class_name in LIVE_CLASSES, references)
    if any(s.live for s in subjects.values()) and not live_prompts:
        raise ValueError(f"{path}: live subjects but no live subject prompts")
    return DreamBench(root, subjects, object_prompts, live_prompts)


def fill(template: str, subject_words: str) -> str:
    return template.replace("{0}", subject_words)


def load_image(path) -> Image.Image:
    """RGB, with the camera's EXIF rotation applied (phone photos are stored sideways)."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def square(image: Image.Image) -> Image.Image:
    """Center crop to a square, so caching at the model's size does not stretch the subject."""
    side = min(image.size)
    return ImageOps.fit(image, (side, side))


# -- generation -------------------------------------------------------------------------------------
class DreamCacheGenerator:
    """A `DreamCachePipeline` as a generator: caches each reference once; text-only without adapters.

    The default settings are the paper's benchmark ones (DDIM, 50 steps, s_txt 7.5, s_img 0.4).
    """

    def __init__(self, dc, generation: GenerationConfig = PAPER_SETTINGS):
        self.dc, self.generation = dc, generation
        self._reference, self._cache = None, None

    def __call__(self, reference, prompts, seed, n):
        cache = None
        if self.dc.adapters is not None:
            if reference is not self._reference:
                self._reference, self._cache = reference, self.dc.cache_reference(reference)
            cache = self._cache
        return self.dc(prompts, cache, self.generation, num_images=n, seed=seed, progress=False)


def generate_dreambench(dc_pipeline_or_callable, root, out_dir, images_per_prompt: int = 4, subjects=None,
                        prompt_limit: int | None = None, seed: int = 0, token: str = "",
                        prompts_per_call: int = 5, progress: bool = True) -> dict:
    """Write `out_dir/<subject>/<prompt:02d>_<k>.png` for every subject and prompt; existing files are kept.

    The generator is called as `generate(reference, prompts, seed, n)` and returns n images per prompt,
    prompt by prompt (a `DreamCachePipeline` is wrapped in `DreamCacheGenerator`). Prompts name the
    subject by its class ("a dog in the jungle"), after `token` if given ("a sks dog ...") for
    fine-tuned methods. Calls hold `prompts_per_call` prompts: bounded memory, fine-grained resuming.
    Returns {"generated": images written now, "existing": images found}.
    """
    generate = dc_pipeline_or_callable
    if hasattr(generate, "cache_reference"):
        generate = DreamCacheGenerator(generate)
    bench = load_dreambench(root)
    names = _select(bench, subjects)
    todo = {name: _missing(bench, name, Path(out_dir), images_per_prompt, prompt_limit) for name in names}
    total = sum(len(bench.templates(n)[:prompt_limit]) for n in names)
    counts = {"generated": 0, "existing": (total - sum(map(len, todo.values()))) * images_per_prompt}
    bar = tqdm(total=sum(map(len, todo.values())), desc="DreamBench prompts", disable=not progress)
    for name in names:
        if not todo[name]:
            continue
        subject = bench.subjects[name]
        reference = square(load_image(subject.references[0]))
        words = f"{token} {subject.class_name}".strip()
        for start in range(0, len(todo[name]), prompts_per_call):
            chunk = todo[name][start:start + prompts_per_call]
            prompts = [fill(bench.templates(name)[i], words) for i in chunk]
            images = list(generate(reference, prompts, seed, images_per_prompt))
            if len(images) != len(chunk) * images_per_prompt:
                raise ValueError(f"the generator returned {len(images)} images for {len(chunk)} prompts x "
                                 f"{images_per_prompt}")
            for j, i in enumerate(chunk):
                for k in range(images_per_prompt):
                    _save(images[j * images_per_prompt + k], Path(out_dir) / name / f"{i:02d}_{k}.png")
            counts["generated"] += len(images)
            bar.update(len(chunk))
    bar.close()
    return counts


def _select(bench: DreamBench, subjects) -> list[str]:
    names = list(bench.subjects) if subjects is None else list(subjects)
    unknown = [n for n in names if n not in bench.subjects]
    if unknown:
        raise ValueError(f"unknown DreamBench subjects {unknown}; valid: {', '.join(bench.subjects)}")
    return names


def _missing(bench, name, out_dir: Path, n: int, prompt_limit) -> list[int]:
    """Prompt indices of `name` with at least one image not written yet."""
    count = len(bench.templates(name)[:prompt_limit])
    return [i for i in range(count) if not all((out_dir / name / f"{i:02d}_{k}.png").is_file() for k in range(n))]


def _save(image, path: Path) -> None:
    """Write through a temporary name: an interrupted run never leaves a half-written image behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    image.save(partial, format="PNG")
    os.replace(partial, path)


# -- scoring ---------------------------------------------------------------------------------------------
class DreamBenchScorer:
    """DINO, CLIP-I and CLIP-T of generated images (definitions in the module docstring).

    `dino`/`clip`: hub ids or folders, or already-built `ViTModel` / `CLIPModel` instances (then
    `clip_processor` is required; `dino_processor` defaults to a plain ImageNet-normalised resize).
    """

    def __init__(self, dino="facebook/dino-vits16", clip="openai/clip-vit-base-patch32", device="cpu",
                 dino_processor=None, clip_processor=None, batch_size: int = 32):
        from transformers import CLIPModel, CLIPProcessor, ViTImageProcessor, ViTModel

        if isinstance(dino, (str, os.PathLike)):
            if dino_processor is None:
                dino_processor = ViTImageProcessor.from_pretrained(dino)
            dino = ViTModel.from_pretrained(dino, add_pooling_layer=False)  # the CLS token is all we use
        if isinstance(clip, (str, os.PathLike)):
            if clip_processor is None:
                clip_processor = CLIPProcessor.from_pretrained(clip)
            clip = CLIPModel.from_pretrained(clip)
        if clip_processor is None:
            raise ValueError("pass clip_processor with a built CLIPModel (its tokenizer cannot be guessed)")
        if dino_processor is None:
            side = dino.config.image_size
            dino_processor = ViTImageProcessor(size={"height": side, "width": side},
                                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
        self.device = device
        self.dino, self.clip = dino.to(device).eval(), clip.to(device).eval()
        self.dino_processor, self.clip_processor = dino_processor, clip_processor
        self.batch_size = batch_size

    # -- embeddings (unit length) -------------------------------------------------------------------
    def dino_embeddings(self, images: list) -> np.ndarray:
        def embed(batch):
            pixels = self.dino_processor(images=batch, return_tensors="pt")["pixel_values"]
            return self.dino(pixel_values=pixels.to(self.device)).last_hidden_state[:, 0]
        return self._batched(images, embed)

    def clip_image_embeddings(self, images: list) -> np.ndarray:
        def embed(batch):
            pixels = self.clip_processor(images=batch, return_tensors="pt")["pixel_values"]
            return _features(self.clip.get_image_features(pixel_values=pixels.to(self.device)))
        return self._batched(images, embed)

    def clip_text_embeddings(self, texts: list[str]) -> np.ndarray:
        def embed(batch):
            tokens = self.clip_processor(text=batch, padding=True, truncation=True, return_tensors="pt")
            return _features(self.clip.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                         attention_mask=tokens["attention_mask"].to(self.device)))
        return self._batched(texts, embed)

    def _batched(self, items: list, embed) -> np.ndarray:
        import torch

        with torch.no_grad():
            rows = [embed(items[i:i + self.batch_size]).float().cpu() for i in range(0, len(items), self.batch_size)]
        out = torch.cat(rows).numpy().astype(np.float64)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    # -- metrics ------------------------------------------------------------------------------------------
    def similarities(self, generated: list, references: list, texts: list[str]) -> dict[str, np.ndarray]:
        """Per generated image: mean cosine to all references (DINO, CLIP-I) and to its text (CLIP-T)."""
        gen_clip = self.clip_image_embeddings(generated)
        unique = list(dict.fromkeys(texts))  # 4 images share each prompt: embed it once
        text = self.clip_text_embeddings(unique)[[unique.index(t) for t in texts]]
        sims = {"dino": (self.dino_embeddings(generated) @ self.dino_embeddings(references).T).mean(axis=1),
                "clip_i": (gen_clip @ self.clip_image_embeddings(references).T).mean(axis=1),
                "clip_t": np.sum(gen_clip * text, axis=1)}
        return {k: np.clip(v, -1.0, 1.0) for k, v in sims.items()}  # rounding can leave 1 + 1e-16

    def score(self, root, out_dir, progress: bool = False) -> dict:
        """{"dino", "clip_i", "clip_t", "images", "per_subject"} over every image in `out_dir`.

        Means are over images (all weigh the same); `per_subject` holds each subject's three means.
        """
        bench, out_dir = load_dreambench(root), Path(out_dir)
        if not out_dir.is_dir():
            raise FileNotFoundError(f"generated images folder not found: {out_dir}")
        per_image, per_subject = {"dino": [], "clip_i": [], "clip_t": []}, {}
        for name, subject in tqdm(bench.subjects.items(), desc="scoring", disable=not progress):
            paths, texts = _generated(bench, name, out_dir)
            if not paths:
                continue
            sims = self.similarities([load_image(p) for p in paths], [load_image(p) for p in subject.references],
                                     texts)
            per_subject[name] = {k: float(v.mean()) for k, v in sims.items()}
            for key, values in sims.items():
                per_image[key].extend(values.tolist())
        if not per_subject:
            raise FileNotFoundError(f"no generated images (<subject>/<prompt>_<k>.png) in {out_dir}")
        summary = {k: float(np.mean(v)) for k, v in per_image.items()}
        return {**summary, "images": len(per_image["dino"]), "per_subject": per_subject}


def _features(output):
    """transformers 4 returns the projected embeddings; 5 returns an output whose pooler_output they are."""
    return output if hasattr(output, "ndim") else output.pooler_output


def _generated(bench: DreamBench, name: str, out_dir: Path) -> tuple[list[Path], list[str]]:
    """A subject's generated images (sorted) and the class-noun prompt of each."""
    templates, noun = bench.templates(name), bench.subjects[name].class_name
    paths, texts = [], []
    for path in sorted((out_dir / name).glob("*.png")):
        match = GENERATED_NAME.match(path.name)
        if match is None:
            continue
        index = int(match.group(1))
        if index >= len(templates):
            raise ValueError(f"{path}: prompt {index} does not exist ({name} has {len(templates)} prompts)")
        paths.append(path)
        texts.append(fill(templates[index], noun))
    return paths, texts
