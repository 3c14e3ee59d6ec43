"""Text and chart images of the synthetic world: rendered words/digits and small bar charts.

These feed the TextVQA-style and ChartQA-style parts of stage 2 and of the eval suite. Text is
drawn with PIL's default font (FreeType when available) at a size chosen to fill the image.

    sign = sample_sign(np.random.default_rng(0)); render_sign(sign, 64)
    chart = sample_chart(np.random.default_rng(0)); render_chart(chart, 64)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clips_tower.world.scene import COLORS, SUPERSAMPLE, add_noise, background_image

WORDS = (
    "stop", "open", "exit", "cafe", "park", "sale", "bus", "taxi", "hotel", "bank", "map", "zoo",
    "gym", "shop", "pizza", "tea", "food", "gate", "bike", "boat", "cat", "dog", "sun", "moon",
    "star", "rain", "snow", "book", "milk", "cake", "lamp", "door", "road", "farm", "fish", "bird",
    "tree", "lake", "hill", "jazz", "yoga", "golf", "wifi", "menu", "fire", "help", "free", "home",
)
# (plate colour, ink colour) pairs with strong contrast.
PLATES = (("white", "black"), ("yellow", "black"), ("black", "white"), ("blue", "white"),
          ("red", "white"), ("green", "white"), ("white", "red"), ("black", "yellow"))
CHART_LABELS = "ABCDEFGH"
BAR_COLORS = ("blue", "red", "green", "orange", "purple", "cyan")


@functools.lru_cache(maxsize=64)
def font(px: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def fit_font(draw: ImageDraw.ImageDraw, text: str, max_w: float, max_h: float) -> ImageFont.ImageFont:
    """Largest default font whose rendering of `text` fits in max_w x max_h."""
    px = max(int(max_h), 4)
    while px > 4:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font(px))
        if right - left <= max_w and bottom - top <= max_h:
            break
        px -= 2
    return font(px)


def draw_centered(draw, text: str, cx: float, cy: float, fnt, fill) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    draw.text((cx - (left + right) / 2, cy - (top + bottom) / 2), text, font=fnt, fill=fill)


@dataclass(frozen=True)
class Sign:
    text: str
    kind: str  # "word" | "number"
    plate: str
    ink: str
    background: str
    offset: tuple[float, float]  # plate centre offset, in image fractions
    noise: float
    noise_seed: int


def sample_sign(rng: np.random.Generator) -> Sign:
    if rng.random() < 0.6:
        text, kind = str(rng.choice(WORDS)), "word"
    else:
        text, kind = str(int(rng.integers(0, 1000))), "number"
    plate, ink = PLATES[int(rng.integers(len(PLATES)))]
    return Sign(
        text=text, kind=kind, plate=plate, ink=ink,
        background=str(rng.choice(["gray", "dark gray", "beige", "slate blue", "olive"])),
        offset=(round(float(rng.uniform(-0.05, 0.05)), 4), round(float(rng.uniform(-0.15, 0.15)), 4)),
        noise=round(float(rng.uniform(1.0, 5.0)), 2), noise_seed=int(rng.integers(2**31)),
    )


def render_sign(sign: Sign, size: int) -> Image.Image:
    side = size * SUPERSAMPLE
    canvas = background_image(sign.background, "vertical", (0, 0, 0), size)
    draw = ImageDraw.Draw(canvas)
    cx, cy = side * (0.5 + sign.offset[0]), side * (0.5 + sign.offset[1])
    w, h = side * 0.92, side * 0.44
    draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=COLORS[sign.plate])
    fnt = fit_font(draw, sign.text, w * 0.9, h * 0.8)
    draw_centered(draw, sign.text, cx, cy, fnt, COLORS[sign.ink])
    return add_noise(canvas.resize((size, size), Image.Resampling.BOX), sign.noise, sign.noise_seed)


@dataclass(frozen=True)
class BarChart:
    labels: tuple[str, ...]
    values: tuple[int, ...]  # 1..9, unique maximum and minimum
    color: str
    noise_seed: int

    @property
    def highest(self) -> str:
        return self.labels[self.values.index(max(self.values))]

    @property
    def lowest(self) -> str:
        return self.labels[self.values.index(min(self.values))]


def sample_chart(rng: np.random.Generator) -> BarChart:
    n = int(rng.integers(3, 5))
    start = int(rng.integers(0, len(CHART_LABELS) - n + 1))
    labels = tuple(CHART_LABELS[start:start + n])
    while True:  # a unique highest and lowest bar keeps every question answerable
        values = tuple(int(v) for v in rng.integers(1, 10, size=n))
        if values.count(max(values)) == 1 and values.count(min(values)) == 1:
            break
    return BarChart(labels=labels, values=values, color=str(rng.choice(BAR_COLORS)),
                    noise_seed=int(rng.integers(2**31)))


def render_chart(chart: BarChart, size: int) -> Image.Image:
    side = size * SUPERSAMPLE
    canvas = Image.new("RGB", (side, side), (245, 245, 240))
    draw = ImageDraw.Draw(canvas)
    n = len(chart.labels)
    label_h, value_h = side * 0.2, side * 0.18  # bottom strip for labels, top strip for values
    base_y, top_y = side - label_h, value_h
    slot = side / n
    label_font = fit_font(draw, "W", slot * 0.8, label_h * 0.85)
    value_font = fit_font(draw, "9", slot * 0.8, value_h * 0.85)
    draw.line([(0, base_y), (side, base_y)], fill=(40, 40, 40), width=max(side // 64, 1))
    for i, (label, value) in enumerate(zip(chart.labels, chart.values)):
        x0, x1 = i * slot + slot * 0.18, (i + 1) * slot - slot * 0.18
        y = base_y - (base_y - top_y) * value / 9
        draw.rectangle([x0, y, x1, base_y], fill=COLORS[chart.color])
        draw_centered(draw, label, (x0 + x1) / 2, base_y + label_h / 2, label_font, (20, 20, 20))
        draw_centered(draw, str(value), (x0 + x1) / 2, y - value_h / 2, value_font, (20, 20, 20))
    return add_noise(canvas.resize((size, size), Image.Resampling.BOX), 1.5, chart.noise_seed)
