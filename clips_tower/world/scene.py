"""Scenes of the synthetic world: the vocabulary, scene sampling and scene rendering.

A scene is 1-6 coloured shapes, each on its own cell of a 3x3 grid, over a tinted gradient
background with pixel noise. Sampling is pure (numpy Generator in, frozen dataclass out);
rendering is pure too (scene + size in, RGB PIL image out), so workers can render in any order.

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, min_objects=1, max_objects=6)
    image = render_scene(scene, size=64)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from clips_tower.io import unknown_message

# Shapes and colours are drawn with skewed frequencies so that POPE's "popular" negatives
# (the most frequent objects of the training data) differ from its "random" ones.
SHAPES: dict[str, float] = {
    "circle": 0.24, "square": 0.21, "triangle": 0.18, "star": 0.14, "cross": 0.12, "diamond": 0.11,
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35), "blue": (35, 75, 225), "green": (30, 165, 55), "yellow": (245, 215, 10),
    "black": (15, 15, 20), "white": (250, 250, 250), "orange": (250, 130, 10),
    "purple": (140, 45, 185), "pink": (250, 115, 195), "cyan": (10, 205, 215),
}
COLOR_WEIGHTS: dict[str, float] = {
    "red": 0.17, "blue": 0.15, "green": 0.13, "yellow": 0.11, "black": 0.10, "white": 0.09,
    "orange": 0.08, "purple": 0.07, "pink": 0.05, "cyan": 0.05,
}
# Mid-tone backgrounds: every object colour (white and black included) stays legible on each.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128), "light gray": (178, 178, 178), "dark gray": (72, 72, 76),
    "beige": (190, 174, 140), "slate blue": (92, 104, 135), "olive": (120, 125, 80),
}
SIZES = ("small", "large")
GRADIENTS = ("none", "horizontal", "vertical", "diagonal")
POSITIONS = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
SUPERSAMPLE = 4  # draw at 4x and box-downsample: clean edges on 32-64 px images


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    row: int
    col: int
    jitter: tuple[float, float]  # offset from the cell centre, in cell units

    @property
    def position(self) -> str:
        return POSITIONS[self.row][self.col]

    @property
    def name(self) -> str:  # "red circle": the unit POPE and captions talk about
        return f"{self.color} {self.shape}"

    def to_json(self) -> dict:
        return {"shape": self.shape, "color": self.color, "size": self.size,
                "row": self.row, "col": self.col, "position": self.position}


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # in reading order (row-major)
    background: str
    gradient: str
    tint: tuple[int, int, int]  # small per-image offset of the background colour
    noise: float  # std of the Gaussian pixel noise
    noise_seed: int

    @property
    def names(self) -> set[str]:
        return {o.name for o in self.objects}


def weighted_choice(rng: np.random.Generator, table: dict) -> str:
    """One key of `table`, drawn with probability proportional to its value."""
    keys = list(table)
    p = np.array([table[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def sample_scene(rng: np.random.Generator, min_objects: int, max_objects: int) -> Scene:
    n = int(rng.integers(min_objects, max_objects + 1))
    cells = sorted(int(c) for c in rng.choice(9, size=n, replace=False))
    objects = []
    for cell in cells:
        objects.append(SceneObject(
            shape=weighted_choice(rng, SHAPES), color=weighted_choice(rng, COLOR_WEIGHTS),
            size=SIZES[int(rng.integers(2))], row=cell // 3, col=cell % 3,
            jitter=(round(float(rng.uniform(-0.06, 0.06)), 4), round(float(rng.uniform(-0.06, 0.06)), 4)),
        ))
    return Scene(
        objects=tuple(objects),
        background=str(rng.choice(list(BACKGROUNDS))),
        gradient=str(rng.choice(GRADIENTS)),
        tint=tuple(int(t) for t in rng.integers(-12, 13, size=3)),
        noise=round(float(rng.uniform(2.0, 9.0)), 2),
        noise_seed=int(rng.integers(2**31)),
    )


def background_array(name: str, gradient: str, tint, side: int) -> np.ndarray:
    """(side, side, 3) float32 background: base colour + tint + an optional linear gradient."""
    base = np.asarray(BACKGROUNDS[name], dtype=np.float32) + np.asarray(tint, dtype=np.float32)
    ramp = np.linspace(-18.0, 18.0, side, dtype=np.float32)
    if gradient == "horizontal":
        shade = np.broadcast_to(ramp[None, :], (side, side))
    elif gradient == "vertical":
        shade = np.broadcast_to(ramp[:, None], (side, side))
    elif gradient == "diagonal":
        shade = (ramp[None, :] + ramp[:, None]) / 2
    else:
        shade = np.zeros((side, side), dtype=np.float32)
    return base[None, None, :] + shade[:, :, None]  # (side, side, 3)


def background_image(name: str, gradient: str, tint, size: int) -> Image.Image:
    """The background at size x size, upsampled to the supersampled drawing canvas (it is smooth)."""
    bg = background_array(name, gradient, tint, size)
    small = Image.fromarray(np.clip(np.rint(bg), 0, 255).astype(np.uint8), "RGB")
    return small.resize((size * SUPERSAMPLE, size * SUPERSAMPLE), Image.Resampling.BILINEAR)


def add_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8), "RGB")


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Outline of a polygonal shape of 'radius' r centred on (cx, cy); circles are drawn apart."""
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":
        a, t = r, r * 0.34
        return [(cx - t, cy - a), (cx + t, cy - a), (cx + t, cy - t), (cx + a, cy - t), (cx + a, cy + t),
                (cx + t, cy + t), (cx + t, cy + a), (cx - t, cy + a), (cx - t, cy + t), (cx - a, cy + t),
                (cx - a, cy - t), (cx - t, cy - t)]
    raise ValueError(unknown_message("shape", shape, SHAPES))


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, color, cx: float, cy: float, r: float) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    else:
        draw.polygon(shape_polygon(shape, cx, cy, r), fill=color)


def render_scene(scene: Scene, size: int) -> Image.Image:
    side = size * SUPERSAMPLE
    canvas = background_image(scene.background, scene.gradient, scene.tint, size)
    draw = ImageDraw.Draw(canvas)
    cell = side / 3
    for obj in scene.objects:
        cx = (obj.col + 0.5 + obj.jitter[0]) * cell
        cy = (obj.row + 0.5 + obj.jitter[1]) * cell
        r = cell * (0.42 if obj.size == "large" else 0.29)
        draw_shape(draw, obj.shape, COLORS[obj.color], cx, cy, r)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return add_noise(small, scene.noise, scene.noise_seed)
