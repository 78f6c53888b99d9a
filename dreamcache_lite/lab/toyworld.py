"""The toy world: a 64x64 procedural laboratory with ground truth for personalisation.

Every image is rendered from a parameter record, so we always know what "the same subject"
means. A subject (:class:`Identity`) has a class noun that captions use ("ball", "star", ...)
plus identity detail that words cannot carry: an exact body colour, an exact pattern colour,
a body pattern with continuous parameters and a 2x2 bit glyph drawn as a block grid in the
middle of the body. Captions may say "blue" or "striped" (coarse words), never the shade or
the glyph -- only a reference image carries those, as with a real dog or backpack.

A :class:`Scene` places the subject in a context covering DreamBench's three prompt kinds:
re-contextualisation (``BACKGROUNDS``), accessorisation (``ACCESSORIES``) and property change
(recolour to a palette colour, tiny/giant). ``BENCHMARK_PROMPTS`` mirrors DreamBench's 25
prompts (10/10/5); ``benchmark_identities()`` are 30 held-out subjects whose seeds live in a
range that ``training_identity`` can never reach.

Conventions: images are uint8 (64, 64, 3); masks are bool (64, 64) of the *visible subject*
(body, pattern, glyph, outline; pixels hidden by an accessory are excluded). A scene's h-flip
mirrors the silhouette and accessories, but pattern and glyph are drawn in the viewer's frame,
so identity attributes read the same in every render. Pixel-level flips of references
(``flip_p``) do mirror them, as the paper's augmentation would. Pure numpy, seeded everywhere
through ``numpy.random.default_rng``: the same seed gives the same bytes.
"""
from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..augment import random_erase as _random_erase
from ..augment import map_to_reference, reference_from_target

WORLD_VERSION = 3
SIZE = 64
R_BASE = 19.0          # subject "radius" in pixels at scale 1 (v1: 17)
# World v2: every identity detail spans >= 2x2 latent pixels (8x8 image pixels) at normal size,
# because the tiny UNet regresses one-latent-pixel detail to its mean colour (v1: 3.4 px glyph
# cells and 3-5 px stripes came back as their average after an SDEdit at 0.3).
# World v3: a fatter star (radii 1.1 / 0.75, v2: 1.05 / 0.56): 37% of a v2 star's body showed
# around the glyph (229 px at normal size), too little to tell its pattern; now 55% (476 px),
# like the mug (50%) and the house (55%). Patterns repeat at least 1.7 times per diameter (v2:
# 1.3), so the visible part of a body shows more than one stripe, check or dot.
GLYPH_SIDE = 2         # the glyph is a GLYPH_SIDE x GLYPH_SIDE grid of dark/light cells
N_GLYPH = GLYPH_SIDE * GLYPH_SIDE
GLYPH_CELL = 0.4       # glyph cell side in subject units (7.6 px at scale 1)
GLYPH_FRAME = 0.06     # mid-gray frame around the glyph grid, subject units
FREQ_RANGE = (1.7, 2.2)  # pattern cycles per subject diameter: half-periods of 8.6-11.2 px at scale 1

CLASSES = ("ball", "box", "star", "heart", "house", "mug")
PATTERNS = ("plain", "stripes", "dots", "checks")
PATTERN_WORDS = {"plain": None, "stripes": "striped", "dots": "dotted", "checks": "checkered"}
PALETTE = {  # canonical shades of the coarse colour words; recolours use the chromatic ones
    "red": (0.86, 0.12, 0.12), "orange": (1.0, 0.55, 0.05), "yellow": (0.98, 0.88, 0.12),
    "green": (0.15, 0.7, 0.2), "blue": (0.12, 0.3, 0.9), "purple": (0.55, 0.2, 0.8),
    "pink": (1.0, 0.5, 0.75), "brown": (0.5, 0.3, 0.12), "gray": (0.5, 0.5, 0.5),
    "black": (0.08, 0.08, 0.08), "white": (0.97, 0.97, 0.97)}
RECOLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink")
SIZES = ("normal", "tiny", "giant")
BACKGROUND_PHRASES = {
    "white": "", "grass": "on the grass", "beach": "on the beach", "snow": "in the snow",
    "night": "at night", "forest": "in the forest", "city": "in the city",
    "water": "on the water", "desert": "in the desert", "wood": "on a wooden floor",
    "brick": "in front of a brick wall"}
BACKGROUNDS = tuple(BACKGROUND_PHRASES)
ACCESSORY_PHRASES = {"none": "", "hat": "wearing a hat", "crown": "wearing a crown",
                     "scarf": "wearing a scarf", "glasses": "wearing glasses",
                     "bowtie": "wearing a bowtie"}
ACCESSORIES = tuple(ACCESSORY_PHRASES)
VOCABULARY = sorted({"a", "an", *CLASSES, *PALETTE, "tiny", "giant",
                     *(w for w in PATTERN_WORDS.values() if w),
                     *" ".join([*BACKGROUND_PHRASES.values(), *ACCESSORY_PHRASES.values()]).split()})

# Per-class anchors in subject units (v points down, top of a ball is v=-1): where the glyph
# sits and where accessories attach, chosen so no accessory ever covers the glyph.
ANCHORS = {  # glyph centre v, head top, eye line, eye spread, neck v, neck half-width, bowtie v
    "ball": dict(glyph=0.0, top=-1.0, eye=-0.63, eyes=0.36, neck=0.5, neck_w=0.87, bow=0.62),
    "box": dict(glyph=0.0, top=-0.85, eye=-0.58, eyes=0.38, neck=0.52, neck_w=0.9, bow=0.6),
    "star": dict(glyph=0.05, top=-1.1, eye=-0.52, eyes=0.3, neck=-0.56, neck_w=0.4, bow=0.56),
    "heart": dict(glyph=-0.07, top=-0.88, eye=-0.66, eyes=0.46, neck=0.42, neck_w=0.62, bow=0.48),
    "house": dict(glyph=0.45, top=-1.0, eye=-0.42, eyes=0.3, neck=-0.16, neck_w=0.95, bow=-0.16),
    "mug": dict(glyph=0.05, top=-0.75, eye=-0.58, eyes=0.34, neck=0.55, neck_w=0.75, bow=0.62),
}

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_YN = _YY / (SIZE - 1)
_DARK, _LIGHT, _FRAME = np.float32(0.07), np.float32(0.97), np.float32(0.55)
# hue ranges (degrees) of the chromatic colour words; identities pick a band, then a hue in it
_HUE_BANDS = ((-20, 15), (15, 45), (45, 70), (70, 165), (165, 260), (260, 290), (290, 340))


def colour_name(rgb) -> str:
    """Coarse colour word for an RGB triple in [0,1] (HSV rules, so captions stay coarse)."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    h *= 360
    if v < 0.22:
        return "black"
    if s < 0.2:
        return "white" if v > 0.85 else "gray"
    if h < 15 or h >= 340:
        return "brown" if v < 0.45 else ("pink" if s < 0.5 else "red")
    if h < 45:
        return "brown" if v < 0.6 else "orange"
    if h < 70:
        return "brown" if v < 0.5 else "yellow"
    if h < 165:
        return "green"
    if h < 260:
        return "blue"
    if h < 290:
        return "purple"
    return "pink" if v >= 0.6 else "purple"


# --------------------------------------------------------------------------- identities
@dataclass(frozen=True)
class Identity:
    """One subject: a class noun plus the detail only a reference image can carry."""
    class_name: str
    body: tuple            # exact body RGB in [0,1]
    pattern: str           # one of PATTERNS
    pattern_colour: tuple  # exact pattern RGB in [0,1]
    freq: float            # pattern cycles per subject diameter (0 for plain)
    angle: float           # pattern orientation in radians (0 for plain)
    phase: float           # pattern phase in [0,1) (0 for plain)
    glyph: tuple           # N_GLYPH bits, row-major from top-left as seen in the image; 1 = dark
    seed: int

    @classmethod
    def from_seed(cls, seed: int) -> "Identity":
        """Class cycles with the seed (so consecutive seeds are class-balanced); rest random."""
        rng = np.random.default_rng(seed)
        lo, hi = _HUE_BANDS[rng.integers(len(_HUE_BANDS))]  # balances the colour words
        hue, neutral = (rng.uniform(lo, hi) / 360) % 1, rng.random() < 0.12
        body = colorsys.hsv_to_rgb(hue, *((rng.uniform(0, 0.12), rng.uniform(0.2, 0.85)) if neutral
                                          else (rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0))))
        for _ in range(100):  # pattern colour must contrast with the body to be visible
            pcol = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 1.0), rng.uniform(0.1, 1.0))
            if np.linalg.norm(np.subtract(pcol, body)) > 0.45:
                break
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
        params = rng.uniform(*FREQ_RANGE), rng.uniform(0, np.pi), rng.random()
        glyph = rng.integers(0, 2, N_GLYPH)
        while not 1 <= glyph.sum() <= N_GLYPH - 1:  # an all-dark or all-light glyph reads as a blob
            glyph = rng.integers(0, 2, N_GLYPH)
        freq, angle, phase = (0.0, 0.0, 0.0) if pattern == "plain" else params
        return cls(CLASSES[seed % len(CLASSES)], tuple(float(c) for c in body), pattern,
                   tuple(float(c) for c in pcol), float(freq), float(angle), float(phase),
                   tuple(int(b) for b in glyph), int(seed))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Identity":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


N_TRAIN_SEEDS = 10**9                  # training identities: seeds [0, 1e9)
BENCHMARK_SEED_BASE = 10**9            # benchmark identities: seeds [1e9, 1e9 + 30)
N_BENCHMARK = 30


def training_identity(i: int) -> Identity:
    """The i-th training identity; i is confined to the training seed range."""
    if not 0 <= i < N_TRAIN_SEEDS:
        raise ValueError(f"training identity index must be in [0, {N_TRAIN_SEEDS})")
    return Identity.from_seed(i)


def benchmark_identities() -> list[Identity]:
    """The 30 held-out subjects (5 per class), from seeds no training index can produce."""
    return [Identity.from_seed(BENCHMARK_SEED_BASE + j) for j in range(N_BENCHMARK)]


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class Scene:
    """Where and how a subject is drawn. `size` is the caption word, `scale` the geometry."""
    background: str = "white"
    accessory: str = "none"
    recolour: str | None = None   # a RECOLOURS word replaces the body colour
    size: str = "normal"          # 'normal' | 'tiny' | 'giant'
    x: float = 32.0               # subject centre, pixels
    y: float = 36.0
    scale: float = 1.0
    flip: bool = False
    seed: int = 0                 # background texture seed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(**d)


def _placement(rng, size: str) -> dict:
    """Random position/scale that keeps the subject (and a hat) mostly in frame."""
    if size == "tiny":
        s, x, y = rng.uniform(0.4, 0.5), rng.uniform(14, 50), rng.uniform(26, 50)
    elif size == "giant":
        s, x, y = rng.uniform(1.4, 1.5), rng.uniform(30, 34), rng.uniform(33, 36)
    else:
        s, x, y = rng.uniform(0.9, 1.15), rng.uniform(24, 40), rng.uniform(34, 40)
    return dict(scale=float(s), x=float(x), y=float(y), flip=bool(rng.random() < 0.5),
                seed=int(rng.integers(2**31)))


def random_scene(rng) -> Scene:
    """A training scene: each of background / accessory / property varies independently."""
    rng = np.random.default_rng(rng)
    bg = "white" if rng.random() < 0.25 else BACKGROUNDS[rng.integers(1, len(BACKGROUNDS))]
    acc = "none" if rng.random() < 0.5 else ACCESSORIES[rng.integers(1, len(ACCESSORIES))]
    p = rng.random()
    recolour = RECOLOURS[rng.integers(len(RECOLOURS))] if p < 0.15 else None
    size = "tiny" if 0.15 <= p < 0.23 else "giant" if 0.23 <= p < 0.31 else "normal"
    return Scene(bg, acc, recolour, size, **_placement(rng, size))


# --------------------------------------------------------------------------- silhouettes
def _ball(u, v):
    return u * u + v * v < 1.0


def _box(u, v):
    return np.maximum(np.abs(u), np.abs(v)) < 0.85


def _star(u, v, ro=1.1, ri=0.75):
    r = np.hypot(u, v)
    a = np.abs((np.arctan2(u, -v) + np.pi / 5) % (2 * np.pi / 5) - np.pi / 5)  # angle from tip
    dx, dy = ri * np.cos(np.pi / 5) - ro, ri * np.sin(np.pi / 5)
    return dx * r * np.sin(a) - dy * (r * np.cos(a) - ro) > 0


def _heart(u, v):
    x, y = u * 1.12, 0.12 - v * 1.12
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 < 0


def _house(u, v):
    au = np.abs(u)
    walls = (au < 0.78) & (v > -0.1) & (v < 0.9)
    roof = (v >= -1.0) & (v <= -0.1) & (au < 0.98 * (v + 1.0) / 0.9)
    chimney = (u > 0.4) & (u < 0.6) & (v > -0.85) & (v < -0.4)
    return walls | roof | chimney


def _mug(u, v):
    body = (np.abs(u) < 0.68) & (v > -0.75) & (v < 0.85)
    d = np.hypot(u - 0.68, v - 0.02)
    return body | ((u > 0.6) & (d < 0.45) & (d > 0.24))


SHAPES = {"ball": _ball, "box": _box, "star": _star, "heart": _heart, "house": _house, "mug": _mug}


# --------------------------------------------------------------------------- backgrounds
def _vgrad(top, bottom, y0=0.0, y1=1.0):
    """Vertical colour gradient between rows y0 and y1 (fractions of the height)."""
    t = np.clip((_YN[:, :1] - y0) / (y1 - y0), 0, 1)[..., None]
    g = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(g, (SIZE, SIZE, 3)).copy()


def _shade(colour, s):
    return np.asarray(colour, np.float32) * s[..., None]


def _bg_white(rng):
    return np.ones((SIZE, SIZE, 3), np.float32)


def _bg_grass(rng):
    img, n = _vgrad((0.45, 0.72, 0.97), (0.75, 0.9, 1.0), 0, 0.4), rng.random((SIZE, SIZE))
    ground = _YN > rng.uniform(0.3, 0.42) + 0.03 * np.sin(_XX * 0.1 + rng.uniform(0, 6))
    blades = 0.75 + 0.3 * n + 0.2 * (rng.random(SIZE) - 0.5)[None, :]
    img[ground] = _shade((0.3, 0.62, 0.18), blades)[ground]
    img[ground & (n > 0.985)] = (1.0, 0.95, 0.3)
    return img


def _bg_beach(rng):
    img, n = _vgrad((0.4, 0.68, 0.98), (0.8, 0.92, 1.0), 0, 0.3), rng.random((SIZE, SIZE))
    h1 = rng.uniform(0.2, 0.3)
    h2 = h1 + rng.uniform(0.13, 0.18) + 0.02 * np.sin(_XX * 0.2 + rng.uniform(0, 6))
    sea = (_YN > h1) & (_YN <= h2)
    waves = np.sin(_XX * 0.45 + _YY * 1.7 + rng.uniform(0, 6)) > 0.75
    img[sea] = (0.1, 0.45, 0.78)
    img[sea & waves] = (0.6, 0.85, 1.0)
    sand = _YN > h2
    img[sand] = _shade((0.95, 0.84, 0.58), 0.9 + 0.12 * n)[sand]
    return img


def _bg_snow(rng):
    img, n = _vgrad((0.62, 0.7, 0.84), (0.84, 0.88, 0.95), 0, 0.4), rng.random((SIZE, SIZE))
    ground = _YN > rng.uniform(0.3, 0.42) + 0.05 * np.sin(_XX * 0.15 + rng.uniform(0, 6))
    drift = 0.94 + 0.05 * np.sin(_XX * 0.2 + _YY * 0.3 + rng.uniform(0, 6))
    img[ground] = _shade((0.98, 0.99, 1.0), drift)[ground]
    img[n > 0.965] = (1.0, 1.0, 1.0)
    img[(n > 0.965) & ground] = (0.75, 0.82, 0.95)  # flakes in front of the snow read blue-ish
    return img


def _bg_night(rng):
    img, n = _vgrad((0.02, 0.03, 0.12), (0.1, 0.12, 0.3)), rng.random((SIZE, SIZE))
    img[n > 0.975] = (1.0, 1.0, 0.8)
    mx, my = rng.uniform(6, 58), rng.uniform(5, 16)
    moon = np.hypot(_XX - mx, _YY - my) < 5
    img[moon & (np.hypot(_XX - mx - 2.5, _YY - my + 1.5) > 4.2)] = (0.98, 0.95, 0.7)
    hill = _YN > 0.85 + 0.04 * np.sin(_XX * 0.12 + rng.uniform(0, 6))
    img[hill] = (0.02, 0.07, 0.05)
    return img


def _bg_forest(rng):
    img = _vgrad((0.07, 0.25, 0.1), (0.15, 0.4, 0.15))
    blobs = np.sin(_XX * 0.5 + rng.uniform(0, 6)) * np.sin(_YY * 0.45 + rng.uniform(0, 6))
    img *= (0.85 + 0.3 * (blobs > 0.3))[..., None]
    xs, ws = rng.uniform(0, SIZE, 6), rng.uniform(1.5, 3.0, 6)
    trunks = (np.abs(_XX[:1] - xs[:, None]) < ws[:, None]).any(0)[None, :] & (_YN > 0.22)
    img[trunks] = (0.36, 0.22, 0.11)
    ground = _YN > 0.85
    img[ground] = _shade((0.3, 0.26, 0.12), 0.85 + 0.3 * rng.random((SIZE, SIZE)))[ground]
    return img


def _bg_city(rng):
    img = _vgrad((0.98, 0.68, 0.45), (0.6, 0.62, 0.85), 0, 0.7)
    widths = rng.integers(6, 14, 12)
    bid = np.minimum(np.searchsorted(np.cumsum(widths), np.arange(SIZE), side="right"), 11)
    height, tone = rng.uniform(0.3, 0.75, 12)[bid], rng.uniform(0.3, 0.55, 12)[bid]
    building = _YN > 1 - height[None, :]
    img[building] = np.broadcast_to(tone[None, :, None], (SIZE, SIZE, 3))[building]
    lit = rng.random((SIZE // 5 + 1, SIZE // 4 + 1))[_YY.astype(int) // 5, _XX.astype(int) // 4]
    window = building & (_XX % 4 < 2) & (_YY % 5 < 2) & (_YN < 0.9)
    img[window] = (0.2, 0.22, 0.3)
    img[window & (lit > 0.45)] = (1.0, 0.88, 0.45)
    img[_YN > 0.9] = (0.22, 0.22, 0.24)
    return img


def _bg_water(rng):
    img = _vgrad((0.2, 0.55, 0.88), (0.04, 0.22, 0.52))
    w = np.sin(_XX * rng.uniform(0.25, 0.4) + 2 * np.sin(_YY * 0.35 + rng.uniform(0, 6))
               + _YY * 1.2 + rng.uniform(0, 6))
    img[w > 0.82] = (0.65, 0.86, 1.0)
    img[w < -0.9] = (0.03, 0.18, 0.42)
    return img


def _bg_desert(rng):
    img = _vgrad((1.0, 0.88, 0.55), (1.0, 0.62, 0.3), 0, 0.45)
    sx, sy = rng.uniform(8, 56), rng.uniform(6, 14)
    img[np.hypot(_XX - sx, _YY - sy) < 5] = (1.0, 0.97, 0.75)
    ground = _YN > rng.uniform(0.35, 0.45) + 0.07 * np.sin(_XX * 0.09 + rng.uniform(0, 6))
    ripple = 0.9 + 0.1 * np.sin(_YY * 0.7 + 3 * np.sin(_XX * 0.1 + rng.uniform(0, 6)))
    img[ground] = _shade((0.88, 0.62, 0.32), ripple)[ground]
    return img


def _bg_wood(rng):
    ph, off = int(rng.integers(7, 11)), int(rng.integers(0, 10))
    plank = ((_YY + off) // ph).astype(int)
    tone = rng.uniform(0.75, 1.05, SIZE // 7 + 3)[plank]
    shift = rng.uniform(0, 64, SIZE // 7 + 3)[plank]
    grain = 0.06 * np.sin(_XX * 0.35 + _YY * 1.3 + shift)
    img = _shade((0.66, 0.43, 0.22), tone + grain)
    img[((_YY + off) % ph == 0) | ((_XX + shift).astype(int) % 40 == 0)] = (0.3, 0.18, 0.08)
    return img


def _bg_brick(rng):
    row = (_YY // 6).astype(int)
    xo = _XX + (row % 2) * 6 + int(rng.integers(0, 12))
    tone = rng.uniform(0.8, 1.1, (SIZE // 6 + 1, SIZE // 12 + 3))[row, (xo // 12).astype(int)]
    img = _shade((0.66, 0.27, 0.2), tone)
    img[(_YY % 6 == 0) | (xo % 12 == 0)] = (0.82, 0.8, 0.75)
    return img


_BG = {"white": _bg_white, "grass": _bg_grass, "beach": _bg_beach, "snow": _bg_snow,
       "night": _bg_night, "forest": _bg_forest, "city": _bg_city, "water": _bg_water,
       "desert": _bg_desert, "wood": _bg_wood, "brick": _bg_brick}


def background(name: str, seed: int = 0) -> np.ndarray:
    """Float32 (64,64,3) background texture in [0,1], deterministic in (name, seed)."""
    return _BG[name](np.random.default_rng(seed))


# --------------------------------------------------------------------------- accessories
def _accessory(name, u, v, a):
    """Layers [(mask, rgb), ...] in subject units; `u` is already mirrored by the scene flip."""
    au, top = np.abs(u), a["top"]
    if name == "hat":  # top hat: brim, crown, red band
        crown = (au < 0.4) & (v > top - 0.8) & (v < top - 0.1)
        brim = (au < 0.65) & (v >= top - 0.14) & (v < top + 0.04)
        band = crown & (v > top - 0.32)
        return [(crown | brim, (0.1, 0.1, 0.12)), (band, (0.85, 0.1, 0.15))]
    if name == "crown":  # gold band with three points and a red jewel
        t = (u / 0.5) % 1.0
        spikes = 0.42 * (1 - 2 * np.minimum(t, 1 - t))
        gold = (au < 0.52) & (v < top + 0.05) & (v > top - 0.25 - spikes)
        jewel = np.hypot(u, v - (top - 0.1)) < 0.09
        return [(gold, (0.98, 0.78, 0.1)), (jewel, (0.85, 0.05, 0.2))]
    if name == "glasses":  # two round lenses with dark rims and a bridge
        d = np.minimum(np.hypot(u - a["eyes"], v - a["eye"]), np.hypot(u + a["eyes"], v - a["eye"]))
        bridge = (au < a["eyes"]) & (np.abs(v - a["eye"] + 0.06) < 0.04)
        return [(d < 0.25, (0.08, 0.08, 0.1)), (d < 0.18, (0.72, 0.9, 1.0)), (bridge, (0.08, 0.08, 0.1))]
    if name == "scarf":  # knitted band round the neck plus a hanging tail on one side
        n, w = a["neck"], a["neck_w"]
        band = (np.abs(v - n) < 0.11) & (au < w)
        t0 = max(0.25 * w, GLYPH_SIDE * GLYPH_CELL / 2 + 0.08)  # the tail hangs beside the glyph
        tail = (u > t0) & (u < t0 + 0.22) & (v > n) & (v < n + 0.55)
        knit = (band | tail) & (((v - n) * 12.5) % 2 < 0.7)
        return [(band | tail, (0.9, 0.12, 0.12)), (knit, (1.0, 0.95, 0.9))]
    if name == "bowtie":  # two triangles and a knot
        dv, b = np.abs(v - a["bow"]), a["bow"]
        wings = (au < 0.36) & (dv < 0.05 + 0.16 * au / 0.36)
        knot = (au < 0.07) & (np.abs(v - b) < 0.08)
        return [(wings, (0.55, 0.1, 0.6)), (knot, (0.3, 0.03, 0.35))]
    return []


# --------------------------------------------------------------------------- rendering
def _pattern(idn: Identity, u, v):
    """Where the pattern colour shows, in the viewer's frame (never mirrored)."""
    if idn.pattern == "plain":
        return None
    c, s, k = np.cos(idn.angle), np.sin(idn.angle), idn.freq / 2
    a, b = (u * c + v * s) * k + idn.phase, (v * c - u * s) * k + idn.phase
    if idn.pattern == "stripes":
        return a % 1.0 < 0.5
    if idn.pattern == "dots":
        return (a % 1.0 - 0.5) ** 2 + (b % 1.0 - 0.5) ** 2 < 0.28 ** 2
    return (np.floor(a) + np.floor(b)) % 2 == 0  # checks


def erode(m):
    """A boolean mask shrunk by one pixel (4-neighbourhood): its inside without the outline."""
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e


def render(identity: Identity, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Draw `identity` in `scene`: (uint8 image (64,64,3), bool mask of the visible subject)."""
    img = background(scene.background, scene.seed)
    r = R_BASE * scene.scale
    u, v = (_XX - scene.x) / r, (_YY - scene.y) / r
    us = -u if scene.flip else u
    mask = SHAPES[identity.class_name](us, v)
    body = PALETTE[scene.recolour] if scene.recolour else identity.body
    img[mask] = body
    pat = _pattern(identity, u, v)
    if pat is not None:
        img[mask & pat] = identity.pattern_colour
    a = ANCHORS[identity.class_name]
    n, half = GLYPH_SIDE, GLYPH_SIDE / 2
    du, dv = u / GLYPH_CELL + half, (v - a["glyph"]) / GLYPH_CELL + half
    fr = GLYPH_FRAME / GLYPH_CELL
    img[(du > -fr) & (du < n + fr) & (dv > -fr) & (dv < n + fr) & mask] = _FRAME
    cells = (du >= 0) & (du < n) & (dv >= 0) & (dv < n) & mask
    bits = np.asarray(identity.glyph, bool)[(dv[cells].astype(int) * n + du[cells].astype(int))]
    img[cells] = np.where(bits[:, None], _DARK, _LIGHT)
    img[mask & ~erode(mask)] = np.asarray(body, np.float32) * 0.45  # outline keeps shapes crisp
    layers = _accessory(scene.accessory, us, v, a)
    for layer, colour in layers:
        img[layer] = colour
        mask &= ~layer
    if layers:
        acc = np.logical_or.reduce([layer for layer, _ in layers])
        img[acc & ~erode(acc)] = _DARK
    return (img * 255 + 0.5).astype(np.uint8), mask


# --------------------------------------------------------------------------- captions
def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def _compose(noun, size="normal", colour=None, pattern_word=None, accessory="none",
             background="white") -> str:
    """Caption grammar shared by captions and benchmark templates (noun may be '{}')."""
    words = [w for w in (size if size != "normal" else None, colour, pattern_word, noun) if w]
    words = [_article(words[0]), *words, ACCESSORY_PHRASES[accessory], BACKGROUND_PHRASES[background]]
    return " ".join(w for w in words if w)


def caption(identity: Identity, scene: Scene, describe: bool = False) -> str:
    """'a tiny ball wearing a hat on the beach'; `describe` adds coarse colour + pattern words."""
    colour = scene.recolour or (colour_name(identity.body) if describe else None)
    pword = PATTERN_WORDS[identity.pattern] if describe else None
    return _compose(identity.class_name, scene.size, colour, pword, scene.accessory, scene.background)


# --------------------------------------------------------------------------- references
def make_reference(identity: Identity, rng_or_seed, flip_p=0.5, erase_p=0.4) -> np.ndarray:
    """The subject alone on white (no accessory, no property change), randomly placed/scaled,
    scene-flipped (silhouette only) and randomly erased. uint8 (64,64,3)."""
    rng = np.random.default_rng(rng_or_seed)
    s = rng.uniform(0.7, 1.2)
    m = R_BASE * s * 1.05
    scene = Scene(x=float(rng.uniform(m, SIZE - m)), y=float(rng.uniform(m, SIZE - m)), scale=float(s),
                  flip=bool(rng.random() < flip_p))
    return _random_erase(render(identity, scene)[0], rng, erase_p)


def sample_training_pair(seed, n_identities: int | None = None, describe_p: float = 0.5,
                         flip_p: float = 0.5, aligned: bool = False) -> dict:
    """One training example: a training identity in a random scene, its caption and a reference
    cut from the target. If the target has an accessory or property change, the reference is cut
    from the same scene without them, so it shows the true identity at normal size and never
    leaks the accessory's outline. `describe_p` is the chance of the describing caption (colour and
    pattern words).
    `flip_p` is the reference's pixel-flip probability (the paper's 0.5; 0 keeps glyphs readable).
    `aligned`: a control, not the paper's recipe -- the reference is the subject on white at its own
    place and size in the target (not moved, rescaled or erased), so correspondence is given.
    `correspondence`: (2, H, W) float32, for each target subject pixel the (y, x) pixel of the
    reference showing the same point of the subject (NaN off the subject): the ground truth of
    where an adapter should look, which only a procedural world knows."""
    rng = np.random.default_rng(seed)
    idn = training_identity(int(rng.integers(n_identities or N_TRAIN_SEEDS)))
    scene = random_scene(rng)
    target, mask = render(idn, scene)
    plain = _plain(scene)
    src, src_mask = (target, mask) if plain == scene else render(idn, plain)
    describe = bool(rng.random() < describe_p)
    # drawn either way: same random stream
    reference, placement = reference_from_target(src, src_mask, rng, flip_p=flip_p, return_placement=True)
    # where each target subject pixel lies in the source render (tiny/giant targets are cut from normal size)
    ratio = plain.scale / scene.scale
    ys, xs = scene.y + (_YY - scene.y) * ratio, scene.x + (_XX - scene.x) * ratio
    if aligned:
        reference = _on_white(src, src_mask)
    elif placement is not None:
        ys, xs = map_to_reference(placement, ys, xs)
    correspondence = np.where(mask & (placement is not None), np.stack([ys, xs]), np.nan).astype(np.float32)
    return dict(target=target, mask=mask, caption=caption(idn, scene, describe),
                reference=reference, correspondence=correspondence, identity=idn, scene=scene)


def _plain(scene: Scene) -> Scene:
    """The scene without accessory or recolour, at normal size (tiny/giant: scale 1 at the same centre):
    what a reference may show of the true identity."""
    return replace(scene, accessory="none", recolour=None, size="normal",
                   scale=scene.scale if scene.size == "normal" else 1.0)


def _on_white(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], image, np.uint8(255))


def render_batch(n: int, seed: int, **kwargs) -> dict:
    """n training pairs stacked: target/mask/reference arrays plus caption/identity/scene lists."""
    pairs = [sample_training_pair((seed, i), **kwargs) for i in range(n)]
    return {k: np.stack([p[k] for p in pairs]) if isinstance(pairs[0][k], np.ndarray)
            else [p[k] for p in pairs] for k in pairs[0]}


# --------------------------------------------------------------------------- benchmark
@dataclass(frozen=True)
class PromptSpec:
    """One benchmark prompt: its DreamBench kind, the Scene fields it sets, a '{}' template."""
    kind: str                  # 'recontext' | 'accessory' | 'property'
    template: str
    background: str = "white"
    accessory: str = "none"
    recolour: str | None = None
    size: str = "normal"


def _spec(kind, background="white", accessory="none", recolour=None, size="normal"):
    return PromptSpec(kind, _compose("{}", size, recolour, None, accessory, background),
                      background, accessory, recolour, size)


BENCHMARK_PROMPTS = (
    [_spec("recontext", background=b) for b in BACKGROUNDS[1:]]
    + [_spec("accessory", accessory=a) for a in ACCESSORIES[1:]]
    + [_spec("accessory", accessory=a, background=b) for a, b in
       [("hat", "forest"), ("crown", "beach"), ("scarf", "snow"), ("glasses", "city"), ("bowtie", "grass")]]
    + [_spec("property", recolour=c) for c in ("red", "blue", "purple")]
    + [_spec("property", size="tiny"), _spec("property", size="giant")])


def prompt_text(spec: PromptSpec, class_name: str) -> str:
    return spec.template.format(class_name)


def benchmark_scene(spec: PromptSpec, seed: int) -> Scene:
    """A concrete Scene for a prompt: the spec's fields plus seeded placement and texture."""
    rng = np.random.default_rng(seed)
    return Scene(spec.background, spec.accessory, spec.recolour, spec.size, **_placement(rng, spec.size))


def aligned_reference(identity: Identity, spec: PromptSpec, seed: int) -> np.ndarray:
    """The `aligned` control's reference for a benchmark image: the subject on white where
    `benchmark_scene(spec, seed)` draws it (plain, as `sample_training_pair(aligned=True)` makes them).
    A control, not a reference a user could have: it knows where the generated subject will be."""
    return _on_white(*render(identity, _plain(benchmark_scene(spec, seed))))
