"""The paper's reference augmentation: the subject alone on white, moved, flipped, erased, seeded."""

import numpy as np

from dreamcache_lite.augment import map_to_reference, random_erase, reference_from_target


def scene(size: int):
    """A red square on a green background, and its mask."""
    image = np.zeros((size, size, 3), np.uint8)
    image[...] = (0, 200, 0)
    mask = np.zeros((size, size), bool)
    mask[size // 4: size // 2, size // 4: size // 2] = True
    image[mask] = (220, 20, 20)
    return image, mask


def test_reference_keeps_the_subject_drops_the_background_at_any_size():
    for size in (64, 512):
        image, mask = scene(size)
        ref = reference_from_target(image, mask, np.random.default_rng(0), erase_p=0.0)
        assert ref.shape == (size, size, 3) and ref.dtype == np.uint8
        colours = {tuple(c) for c in ref.reshape(-1, 3)}
        assert (255, 255, 255) in colours and (0, 200, 0) not in colours


def test_augmentation_is_seeded_and_an_empty_mask_gives_white():
    image, mask = scene(64)
    a, b = (reference_from_target(image, mask, np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(a, b)
    assert (reference_from_target(image, np.zeros_like(mask), 0) == 255).all()
    assert np.array_equal(random_erase(image.copy(), np.random.default_rng(0), p=0.0), image)


def test_the_placement_maps_each_subject_pixel_onto_its_place_in_the_reference():
    """The ground truth of correspondence: where the augmentation put each point of the subject."""
    image, mask = scene(64)
    image[16:24, 16:32] = (20, 20, 220)  # the square's top half blue: flips and moves must be followed
    for seed in range(6):
        plain = reference_from_target(image, mask, np.random.default_rng(seed), flip_p=0.5, erase_p=0.0)
        ref, placement = reference_from_target(image, mask, np.random.default_rng(seed), flip_p=0.5, erase_p=0.0,
                                               return_placement=True)
        assert np.array_equal(plain, ref)  # asking for the placement draws no other random numbers
        ys, xs = np.nonzero(mask)
        ry, rx = map_to_reference(placement, ys, xs)
        shown = ref[np.round(ry).astype(int).clip(0, 63), np.round(rx).astype(int).clip(0, 63)].astype(int)
        assert (np.abs(shown - image[ys, xs]).sum(-1) < 60).mean() > 0.9
    assert reference_from_target(image, np.zeros_like(mask), 0, return_placement=True)[1] is None
