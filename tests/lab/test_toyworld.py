"""The toy world: determinism, shapes, splits, benchmark prompts and caption vocabulary."""

import json
import re

import numpy as np
import pytest

from dreamcache_lite.lab import toyworld as tw


def test_identity_is_deterministic_and_round_trips_through_json():
    a, b = tw.Identity.from_seed(7), tw.Identity.from_seed(7)
    assert a == b and a != tw.Identity.from_seed(8)
    assert tw.Identity.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert len(a.glyph) == tw.N_GLYPH and set(a.glyph) <= {0, 1}
    assert a.class_name in tw.CLASSES and a.pattern in tw.PATTERNS
    assert all(0 <= c <= 1 for c in a.body + a.pattern_colour)


def test_scene_round_trips_through_json():
    s = tw.random_scene(3)
    assert tw.Scene.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("seed", range(6))
def test_render_shapes_dtypes_determinism(seed):
    idn, scene = tw.training_identity(seed), tw.random_scene(seed)
    img, mask = tw.render(idn, scene)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert mask.shape == (64, 64) and mask.dtype == bool and mask.sum() > 10
    img2, mask2 = tw.render(idn, scene)
    assert img.tobytes() == img2.tobytes() and (mask == mask2).all()


def test_every_background_and_accessory_renders_differently():
    idn = tw.training_identity(0)
    bgs = [tw.render(idn, tw.Scene(background=b, seed=1))[0].astype(float) for b in tw.BACKGROUNDS]
    accs = [tw.render(idn, tw.Scene(accessory=a))[0].astype(float) for a in tw.ACCESSORIES]
    for imgs in (bgs, accs):
        for i in range(len(imgs)):
            for j in range(i):
                assert (np.abs(imgs[i] - imgs[j]).sum(-1) > 30).sum() > 25


def test_recolour_keeps_glyph_and_mask():
    idn = tw.training_identity(6)  # a ball: glyph at the body centre (32, 36)
    (a, ma), (b, mb) = tw.render(idn, tw.Scene()), tw.render(idn, tw.Scene(recolour="red"))
    assert (ma == mb).all() and (a != b).any()
    centre = (slice(31, 41), slice(27, 37))
    assert (a[centre] == b[centre]).all()


def test_reference_is_white_outside_the_subject():
    for seed in range(5):
        idn = tw.training_identity(seed)
        ref = tw.make_reference(idn, seed, erase_p=0.0)
        white = (ref == 255).all(-1)
        assert ref.shape == (64, 64, 3) and ref.dtype == np.uint8
        assert 0.5 < white.mean() < 0.97
        assert ref.tobytes() == tw.make_reference(idn, seed, erase_p=0.0).tobytes()


def test_reference_from_target_removes_the_background():
    idn, scene = tw.training_identity(2), tw.Scene(background="grass", seed=5)
    refs = [tw.reference_from_target(*tw.render(idn, s), np.random.default_rng(0), erase_p=0.0)
            for s in (scene, tw.Scene())]  # same subject on grass and on white
    assert refs[0].shape == (64, 64, 3) and (refs[0] == 255).all(-1).mean() > 0.4
    assert refs[0].tobytes() == refs[1].tobytes()


def test_training_pair_and_batch():
    p = tw.sample_training_pair(11)
    assert set(p) == {"target", "mask", "caption", "reference", "correspondence", "identity", "scene"}
    q = tw.sample_training_pair(11)
    assert p["target"].tobytes() == q["target"].tobytes() and p["caption"] == q["caption"]
    b = tw.render_batch(4, seed=0)
    assert b["target"].shape == (4, 64, 64, 3) and b["mask"].shape == (4, 64, 64)
    assert len(b["caption"]) == 4


def test_benchmark_identities_are_30_balanced_and_disjoint():
    bench = tw.benchmark_identities()
    assert len(bench) == 30 and len({i.seed for i in bench}) == 30
    counts = {c: sum(i.class_name == c for i in bench) for c in tw.CLASSES}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(i.seed >= tw.N_TRAIN_SEEDS for i in bench)  # outside every training seed
    with pytest.raises(ValueError):
        tw.training_identity(tw.N_TRAIN_SEEDS)
    train_colours = {tw.training_identity(i).body for i in range(200)}
    assert not train_colours & {i.body for i in bench}


def test_benchmark_prompts_mirror_dreambench():
    kinds = [p.kind for p in tw.BENCHMARK_PROMPTS]
    assert len(kinds) == 25 and (kinds.count("recontext"), kinds.count("accessory"),
                                 kinds.count("property")) == (10, 10, 5)
    assert len({p.template for p in tw.BENCHMARK_PROMPTS}) == 25
    for idn in tw.benchmark_identities()[:6]:
        for k, spec in enumerate(tw.BENCHMARK_PROMPTS):
            scene = tw.benchmark_scene(spec, seed=k)
            assert tw.caption(idn, scene) == tw.prompt_text(spec, idn.class_name)
            assert scene == tw.benchmark_scene(spec, seed=k)


def test_captions_use_vocabulary_and_no_numbers():
    vocab = set(tw.VOCABULARY)
    for seed in range(200):
        idn, scene = tw.training_identity(seed), tw.random_scene(seed)
        for describe in (False, True):
            text = tw.caption(idn, scene, describe)
            assert not re.search(r"\d", text)
            assert set(text.split()) <= vocab, text
    assert tw.caption(tw.Identity.from_seed(0), tw.Scene(background="beach")) == "a ball on the beach"


def test_colour_names_of_palette():
    for name, rgb in tw.PALETTE.items():
        assert tw.colour_name(rgb) == name


def test_identity_detail_spans_two_latent_pixels_at_normal_size():
    """World v2's promise: glyph cells and pattern half-periods are >= 8 px (2x2 latent pixels of
    the 4x-downsampling VAE) for every normal-size subject."""
    smallest_normal = 0.9 * tw.R_BASE
    assert tw.GLYPH_CELL * smallest_normal >= 6.8  # 7.6 px at scale 1, 8.7 px at 1.15
    assert smallest_normal * 2 / tw.FREQ_RANGE[1] / 2 >= 7.7
    for seed in range(200):
        idn = tw.training_identity(seed)
        assert idn.pattern == "plain" or tw.FREQ_RANGE[0] <= idn.freq <= tw.FREQ_RANGE[1]
        assert 1 <= sum(idn.glyph) <= tw.N_GLYPH - 1


@pytest.mark.parametrize("class_name", tw.CLASSES)
def test_no_accessory_covers_the_glyph(class_name):
    idn = next(i for i in tw.benchmark_identities() if i.class_name == class_name)
    idn = tw.replace(idn, glyph=(1,) * tw.N_GLYPH)
    dark = (tw.render(idn, tw.Scene())[0] == round(0.07 * 255)).all(-1)
    for accessory in tw.ACCESSORIES[1:]:
        for flip in (False, True):
            img = tw.render(idn, tw.Scene(accessory=accessory, flip=flip))[0]
            assert (dark <= (img == round(0.07 * 255)).all(-1)).all(), (accessory, flip)


def test_aligned_reference_of_a_benchmark_image_is_its_subject_in_place_on_white():
    """The generation-time control (scripts/aligned_ceiling.py): for a plain prompt the reference copies
    the true scene's subject pixels; a hat is left out and tiny/giant subjects are drawn at normal size."""
    idn = tw.benchmark_identities()[3]
    by_template = {spec.template: spec for spec in tw.BENCHMARK_PROMPTS}
    beach = by_template["a {} on the beach"]
    truth, mask = tw.render(idn, tw.benchmark_scene(beach, 1))
    reference = tw.aligned_reference(idn, beach, 1)
    assert (reference[mask] == truth[mask]).all() and (reference[~mask] == 255).all()
    hat = tw.aligned_reference(idn, by_template["a {} wearing a hat"], 1)
    plain, plain_mask = tw.render(idn, tw.replace(tw.benchmark_scene(by_template["a {} wearing a hat"], 1),
                                                  accessory="none"))
    assert (hat == np.where(plain_mask[..., None], plain, 255)).all()
    tiny_spec = by_template["a tiny {}"]
    tiny = tw.aligned_reference(idn, tiny_spec, 1)
    assert (tiny != 255).any(-1).sum() > 2 * tw.render(idn, tw.benchmark_scene(tiny_spec, 1))[1].sum()
