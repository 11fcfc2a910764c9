"""Procedural captioned scenes for the demo model: one or two flat shapes on a background.

Everything is drawn in torch, batched, on any device, from a seeded `torch.Generator`, so the
training loop makes its data on the GPU and the benchmark draws the same kind of pictures on the CPU.
Position and size are random and never named in the caption; colour, shape, texture and the
background are. Images are `[B, 3, H, W]` in [0, 1]; masks are `[B, 2, H, W]` bool (slot 1 is empty
for one-object scenes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.70, 0.15),
    "blue": (0.10, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.55, 0.10, 0.75),
    "orange": (1.00, 0.55, 0.00),
    "white": (0.97, 0.97, 0.97),
    "black": (0.05, 0.05, 0.05),
}
BACKGROUND_COLOURS: dict[str, tuple[float, float, float]] = {
    **{k: COLOURS[k] for k in ("red", "green", "blue", "yellow", "purple", "white", "black")},
    "gray": (0.50, 0.50, 0.50),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted")
PATTERNS: tuple[str, ...] = ("plain", "checkered")

COLOUR_NAMES = tuple(COLOURS)
BACKGROUND_NAMES = tuple(BACKGROUND_COLOURS)
# Every word a caption can hold, for the tokenizer (the loader keeps only these embedding rows).
VOCABULARY: tuple[str, ...] = (
    *COLOUR_NAMES, "gray", *SHAPES, "striped", "dotted", "checkered", "a", "on", "next", "to", "background",
)


def texture_colour(rgb: torch.Tensor) -> torch.Tensor:
    """The second colour of a striped or dotted object: a darker shade, a mid gray for dark colours.

    rgb: `[..., 3]` in [0, 1]; returns the same shape.
    """
    luminance = (rgb * rgb.new_tensor([0.3, 0.59, 0.11])).sum(-1, keepdim=True)
    return torch.where(luminance < 0.25, 0.4 * rgb + 0.35, 0.4 * rgb)


@dataclass
class SceneObject:
    """One object of a scene description."""

    colour: str
    shape: str
    texture: str = "plain"

    def phrase(self) -> str:
        """`a striped red circle`, `a blue square`."""
        texture = "" if self.texture == "plain" else f"{self.texture} "
        return f"a {texture}{self.colour} {self.shape}"


@dataclass
class Scene:
    """What a caption says: the objects (one or two) and the background (colour None: unnamed)."""

    objects: list[SceneObject]
    background: str | None = None
    pattern: str = "plain"

    def caption(self) -> str:
        """`a red circle on a blue background`, `a striped green square next to a yellow triangle`."""
        text = " next to ".join(o.phrase() for o in self.objects)
        if self.background is not None:
            pattern = "" if self.pattern == "plain" else f"{self.pattern} "
            text += f" on a {pattern}{self.background} background"
        return text


@dataclass
class SceneBatch:
    """A rendered batch: images `[B, 3, H, W]` in [0, 1], object masks `[B, 2, H, W]`, and the scenes."""

    images: torch.Tensor
    masks: torch.Tensor
    scenes: list[Scene]

    @property
    def captions(self) -> list[str]:
        return [s.caption() for s in self.scenes]


def _randint(gen: torch.Generator, high: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """`n` integers uniform in [0, high) (high may be a tensor `[n]`)."""
    u = torch.rand(n, generator=gen, device=device)
    return (u * high).long().clamp(max=(torch.as_tensor(high, device=device) - 1))


def _distinct(gen: torch.Generator, n: int, k: int, device: torch.device,
              avoid: list[torch.Tensor]) -> torch.Tensor:
    """`n` indices in [0, k), each different from the same row of every tensor in `avoid`."""
    idx = _randint(gen, k, n, device)
    for _ in range(64):
        clash = torch.zeros(n, dtype=torch.bool, device=device)
        for a in avoid:
            clash |= idx == a
        if not clash.any():
            break
        idx = torch.where(clash, _randint(gen, k, n, device), idx)
    return idx


def shape_mask(shape: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor,
               ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Inside-test of each row's shape.

    shape, cx, cy, r: `[B]` (pixels); ys, xs: `[S, S]` pixel coordinates; returns `[B, S, S]` bool.
    """
    dx = xs[None] - cx[:, None, None]
    dy = ys[None] - cy[:, None, None]
    rr = r[:, None, None]
    circle = dx * dx + dy * dy <= rr * rr
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.85 * rr
    triangle = (dy <= 0.75 * rr) & (dx.abs() <= (dy + rr) * (1.0 / 1.75))
    diamond = dx.abs() + dy.abs() <= 1.2 * rr
    s = shape[:, None, None]
    return torch.where(s == 0, circle, torch.where(s == 1, square, torch.where(s == 2, triangle, diamond)))


def _texture(texture: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Where the second colour goes: stripes (period 4 px) or dots (4 px grid).

    texture: `[B]`; dy, dx: `[B, S, S]` pixel offsets from the object centre. Returns `[B, S, S]` bool.
    """
    stripes = (dy % 4.0) >= 2.0
    gx = dx % 4.0 - 2.0
    gy = dy % 4.0 - 2.0
    dots = gx * gx + gy * gy <= 1.0
    t = texture[:, None, None]
    return torch.where(t == 1, stripes, dots & (t == 2))


def render(
    colour: torch.Tensor, shape: torch.Tensor, texture: torch.Tensor, centre: torch.Tensor,
    radius: torch.Tensor, present: torch.Tensor, background: torch.Tensor, pattern: torch.Tensor,
    size: int, supersample: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw scenes from their parameters.

    colour, shape, texture, present: `[B, 2]` long/bool (object slots); centre: `[B, 2, 2]` (x, y in
    pixels); radius: `[B, 2]` pixels; background, pattern: `[B]`. Returns images `[B, 3, size, size]`
    in [0, 1] and masks `[B, 2, size, size]` bool, antialiased by `supersample`.
    """
    device = colour.device
    s = size * supersample
    coords = (torch.arange(s, device=device, dtype=torch.float32) + 0.5) / supersample
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    palette = torch.tensor(list(COLOURS.values()), device=device)
    bg_palette = torch.tensor(list(BACKGROUND_COLOURS.values()), device=device)
    bg = bg_palette[background][:, :, None, None].expand(-1, -1, s, s)
    checks = ((((ys // 8) + (xs // 8)) % 2) == 1)[None, None]
    bg = torch.where(checks & (pattern == 1)[:, None, None, None], 0.8 * bg, bg)
    image = bg.clone()
    masks = []
    for slot in range(2):
        inside = shape_mask(shape[:, slot], centre[:, slot, 0], centre[:, slot, 1], radius[:, slot], ys, xs)
        inside &= present[:, slot, None, None]
        rgb = palette[colour[:, slot]]
        second = _texture(texture[:, slot], ys[None] - centre[:, slot, 1, None, None],
                          xs[None] - centre[:, slot, 0, None, None])
        fill = torch.where(second[:, None], texture_colour(rgb)[:, :, None, None], rgb[:, :, None, None])
        image = torch.where(inside[:, None], fill, image)
        masks.append(inside)
    mask = torch.stack(masks, 1).float()
    if supersample > 1:
        image = torch.nn.functional.avg_pool2d(image, supersample)
        mask = torch.nn.functional.avg_pool2d(mask, supersample)
    return image.clamp(0, 1), mask >= 0.5


def sample_scenes(n: int, gen: torch.Generator, size: int = 32, device: torch.device | str = "cpu",
                  p_two: float = 0.5, p_background: float = 0.85) -> SceneBatch:
    """Draw `n` random scenes (seeded by `gen`, which must live on `device`)."""
    device = torch.device(device)
    two = torch.rand(n, generator=gen, device=device) < p_two
    present = torch.stack([torch.ones_like(two), two], 1)
    background = _randint(gen, len(BACKGROUND_NAMES), n, device)
    # Object colours differ from the background's (when it is an object colour) and from each other.
    bg_as_obj = torch.tensor([COLOUR_NAMES.index(b) if b in COLOURS else -1 for b in BACKGROUND_NAMES],
                             device=device)[background]
    c0 = _distinct(gen, n, len(COLOUR_NAMES), device, [bg_as_obj])
    c1 = _distinct(gen, n, len(COLOUR_NAMES), device, [bg_as_obj, c0])
    colour = torch.stack([c0, c1], 1)
    shape = torch.stack([_randint(gen, len(SHAPES), n, device) for _ in range(2)], 1)
    texture_roll = torch.rand(n, 2, generator=gen, device=device)
    texture = torch.where(texture_roll < 0.6, 0, torch.where(texture_roll < 0.8, 1, 2))
    pattern = (torch.rand(n, generator=gen, device=device) < 0.3).long()
    # One object: anywhere, radius 5-11 px at 32 px. Two: each in its own half (left/right or top/bottom).
    unit = size / 32.0
    r_one = (5.0 + 6.0 * torch.rand(n, generator=gen, device=device)) * unit
    r_two = (3.5 + 3.5 * torch.rand(n, 2, generator=gen, device=device)) * unit
    radius = torch.where(two[:, None], r_two, torch.stack([r_one, r_one], 1))
    u = torch.rand(n, 2, 2, generator=gen, device=device)
    lo, hi = radius[..., None] + 1.0, size - radius[..., None] - 1.0
    anywhere = lo + u * (hi - lo)
    vertical = torch.rand(n, generator=gen, device=device) < 0.5
    first_low = torch.rand(n, generator=gen, device=device) < 0.5
    half = size / 2.0
    along_lo = torch.stack([radius[:, 0] + 0.5, half + radius[:, 1] + 0.5], 1)
    along_hi = torch.stack([half - radius[:, 0] - 0.5, size - radius[:, 1] - 0.5], 1)
    along = along_lo + u[..., 0] * (along_hi - along_lo)
    along = torch.where(first_low[:, None], along, size - along)
    across = anywhere[..., 1]
    split = torch.where(vertical[:, None, None], torch.stack([across, along], -1),
                        torch.stack([along, across], -1))
    centre = torch.where(two[:, None, None], split, anywhere)
    images, masks = render(colour, shape, texture, centre, radius, present, background, pattern, size)
    named_bg = torch.rand(n, generator=gen, device=device) < p_background
    scenes = []
    rows = zip(two.tolist(), colour.tolist(), shape.tolist(), texture.tolist(), background.tolist(),
               pattern.tolist(), named_bg.tolist(), strict=True)
    for is_two, cs, ss, ts, b, p, named in rows:
        objects = [SceneObject(COLOUR_NAMES[cs[i]], SHAPES[ss[i]], TEXTURES[ts[i]])
                   for i in range(1 + is_two)]
        scenes.append(Scene(objects, BACKGROUND_NAMES[b] if named else None, PATTERNS[p]))
    return SceneBatch(images, masks, scenes)


def draw_scene(scene: Scene, centres: list[tuple[float, float]], radii: list[float], size: int = 32,
               device: torch.device | str = "cpu") -> SceneBatch:
    """Draw one given scene with given object centres (x, y pixels) and radii (the benchmark's real images).

    An unnamed background is drawn gray.
    """
    device = torch.device(device)
    k = len(scene.objects)
    objs = scene.objects + scene.objects[:1] * (2 - k)
    centres = list(centres) + list(centres[:1]) * (2 - k)
    radii = list(radii) + list(radii[:1]) * (2 - k)

    def row(values: list[int]) -> torch.Tensor:
        return torch.tensor([values], device=device)

    images, masks = render(
        row([COLOUR_NAMES.index(o.colour) for o in objs]), row([SHAPES.index(o.shape) for o in objs]),
        row([TEXTURES.index(o.texture) for o in objs]),
        torch.tensor([centres], device=device, dtype=torch.float32),
        torch.tensor([radii], device=device, dtype=torch.float32), row([True, k == 2]),
        row(BACKGROUND_NAMES.index(scene.background or "gray")), row(PATTERNS.index(scene.pattern)), size,
    )
    return SceneBatch(images, masks, [scene])
