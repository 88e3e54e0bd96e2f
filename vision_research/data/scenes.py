"""Synthetic shapes: a deterministic renderer of textured scenes with occluding circles, squares and triangles.

What it is for: the embedded default dataset of the object detection and semantic segmentation tasks. Nothing
is downloaded; a scene is a pure function of a ``numpy.random.Generator`` state, so one seed fixes a dataset.

Why it is designed this way:
- Learnable: the class is the shape's geometry alone (round, four corners, three corners), shapes are at least
  ``min_size`` of the image side, and their edges are sharp against a background that has no sharp edges.
  An object's colour always contrasts with the pixels around it, and touching objects never share a colour.
- Not trivial: every background is a different smooth texture (colour gradients, noise fields, faint stripes
  or an egg-crate pattern, grain) built mostly from the objects' own palette colours washed towards grey by
  random amounts, so no global colour threshold separates objects from background; an object's colour is
  drawn from the palette independently of its class, with per-object jitter, shading and noise; objects
  occlude each other, cast soft shadows and may be cut by the image border.
- Exact labels: an object's pixels are those whose centre lies inside its shape (edges are anti-aliased in
  the image only), later objects overwrite earlier ones in the instance mask, and each box is the tight box of
  the visible pixels. Placements that would leave any object less than ``min_visible`` visible (occluded or
  outside the image) are rejected and redrawn.

A ``Scene`` holds the RGB image, the instance mask (0 = background, k + 1 = object k), and per object its
class name, box (xyxy, continuous pixel coordinates), full area in pixels (had it been neither occluded nor cut
by the border) and palette colour name; ``Scene.semantic_mask()`` gives the per-pixel class map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
SIDES = {"circle": 0, "square": 4, "triangle": 3}  # 0: the round limit of a regular polygon
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (244, 132, 22),
    "yellow": (236, 204, 36),
    "green": (46, 160, 64),
    "cyan": (30, 182, 196),
    "blue": (40, 78, 212),
    "purple": (128, 58, 190),
    "magenta": (220, 54, 160),
}
MIN_INSIDE = 0.6  # fraction of an object's area that must lie inside the image
ATTEMPTS_PER_OBJECT = 60
MIN_CONTRAST = 0.25  # RGB distance (values in [0, 1]) between an object's colour and the pixels around it
EDGE_RING = 3.0  # width in pixels of the ring around an object whose colours it must contrast with
WINDOW_PAD = 8  # pixels around a shape's extent: anti-aliasing plus its shadow


@dataclass
class Scene:
    """One rendered scene: image, instance mask and, per object, class, visible box, full area and colour."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    instance_mask: np.ndarray  # [H, W] int32: 0 background, k + 1 the visible pixels of object k
    categories: list[str]  # class name of object k
    boxes: list[tuple[float, float, float, float]]  # tight xyxy box of object k's visible pixels
    full_areas: list[int]  # pixels object k would cover were it neither occluded nor cut by the border
    colors: list[str]  # PALETTE name of object k's fill colour

    def semantic_mask(self) -> np.ndarray:
        """[H, W] uint8 class map: 0 background, 1 + ``SHAPE_CLASSES.index(category)`` on object pixels."""
        lookup = np.array([0] + [1 + SHAPE_CLASSES.index(c) for c in self.categories], dtype=np.uint8)
        return lookup[self.instance_mask]


@dataclass(frozen=True)
class _Shape:
    category: str
    center: tuple[float, float]  # (row, col)
    apothem: float  # distance from the centre to each edge (the radius of a circle)
    angle: float

    @property
    def circumradius(self) -> float:
        return _circumradius(self.category, self.apothem)

    def signed_distance(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Distance in pixels to the outline, negative inside (exact for circles and along polygon edges)."""
        dy, dx = rows - self.center[0], cols - self.center[1]
        sides = SIDES[self.category]
        if not sides:
            return np.sqrt(dy * dy + dx * dx) - self.apothem
        normals = self.angle + 2 * math.pi * np.arange(sides) / sides
        return np.max([dy * math.sin(a) + dx * math.cos(a) for a in normals], axis=0) - self.apothem


@dataclass(frozen=True)
class _Light:
    offset: tuple[float, float]  # shadow displacement (rows, cols) in pixels
    blur: float  # half-width in pixels of the shadow's soft edge
    opacity: float  # 0: no shadows


@dataclass
class _Raster:
    """A shape sampled on the in-image part of its window; ``full_area`` counts the out-of-image part too."""

    shape: _Shape
    rows: slice
    cols: slice
    grid: tuple[np.ndarray, np.ndarray]  # pixel-centre coordinates, [h, 1] and [1, w]
    distance: np.ndarray  # [h, w] signed distance
    full_area: int

    @property
    def mask(self) -> np.ndarray:
        return self.distance <= 0


@dataclass
class _Canvas:
    """The scene being painted: float image, instance mask, light, and per placed object its labels."""

    image: np.ndarray
    instance: np.ndarray
    light: _Light
    categories: list[str] = field(default_factory=list)
    full_areas: list[int] = field(default_factory=list)
    colors: list[str] = field(default_factory=list)
    visible: list[int] = field(default_factory=list)


def render_scene(
    rng: np.random.Generator,
    image_size: int = 128,
    max_objects: int = 4,
    min_objects: int = 1,
    min_size: float = 0.15,
    max_size: float = 0.45,
    min_visible: float = 0.6,
) -> Scene:
    """Render one scene of ``min_objects``..``max_objects`` shapes on a textured background.

    Sizes (circle diameter, square or triangle side) are fractions of ``image_size``; every object keeps at
    least ``min_visible`` of its area visible and ``MIN_INSIDE`` of it inside the image. Fewer objects than
    drawn are kept when no valid placement is found, never fewer than ``min_objects`` (a ``ConfigError``).
    """
    _check_arguments(image_size, max_objects, min_objects, min_size, max_size, min_visible)
    canvas = _Canvas(_background(rng, image_size), np.zeros((image_size, image_size), np.int32), _sample_light(rng))
    sizes = (min_size * image_size, max_size * image_size)
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        category = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        if not _place(rng, canvas, category, sizes, min_visible):
            break
    if len(canvas.categories) < min_objects:
        raise ConfigError(
            f"could not place {min_objects} objects of size {min_size}-{max_size} with min_visible={min_visible} "
            f"in a {image_size}x{image_size} image; lower min_objects or the sizes"
        )
    boxes = _tight_boxes(canvas.instance, len(canvas.categories))
    image = _finish(rng, canvas.image)
    return Scene(image, canvas.instance, canvas.categories, boxes, canvas.full_areas, canvas.colors)


def _check_arguments(
    image_size: int, max_objects: int, min_objects: int, min_size: float, max_size: float, min_visible: float
) -> None:
    if image_size < 16:
        raise ConfigError(f"image_size must be at least 16, got {image_size}")
    if not 1 <= min_objects <= max_objects:
        raise ConfigError(f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
    if not 0 < min_size <= max_size <= 1:
        raise ConfigError(f"need 0 < min_size <= max_size <= 1, got {min_size} and {max_size}")
    if min_size * image_size < 4:
        raise ConfigError(f"min_size={min_size} is under 4 pixels at image_size={image_size}")
    if not 0 < min_visible <= 1:
        raise ConfigError(f"min_visible must be in (0, 1], got {min_visible}")


def _place(
    rng: np.random.Generator, canvas: _Canvas, category: str, sizes: tuple[float, float], min_visible: float
) -> bool:
    """Draw placements until one fits and has a contrasting colour, then paint it; False after too many tries."""
    for _ in range(ATTEMPTS_PER_OBJECT):
        raster = _rasterize(_sample_shape(rng, category, canvas.instance.shape[0], sizes), canvas.instance.shape[0])
        hidden = canvas.instance[raster.rows, raster.cols][raster.mask]
        visible = (
            np.asarray(canvas.visible, dtype=np.int64) - np.bincount(hidden, minlength=len(canvas.visible) + 1)[1:]
        )
        if not _fits(raster, visible, np.asarray(canvas.full_areas), min_visible):
            continue
        picked = _pick_color(rng, raster, canvas)
        if picked is None:
            continue
        color, rgb = picked
        _paint(rng, canvas, raster, rgb)
        canvas.instance[raster.rows, raster.cols][raster.mask] = len(canvas.categories) + 1
        canvas.visible = [*visible.tolist(), int(raster.mask.sum())]
        canvas.categories.append(category)
        canvas.full_areas.append(raster.full_area)
        canvas.colors.append(color)
        return True
    return False


def _circumradius(category: str, apothem: float) -> float:
    sides = SIDES[category]
    return apothem / math.cos(math.pi / sides) if sides else apothem


def _sample_shape(rng: np.random.Generator, category: str, image_size: int, size_range: tuple[float, float]) -> _Shape:
    """A shape of a random size (diameter or side), rotation and position, possibly overlapping the border."""
    size = rng.uniform(*size_range)
    sides = SIDES[category]
    apothem = size / 2 / math.tan(math.pi / sides) if sides else size / 2
    angle = rng.uniform(0, 2 * math.pi)
    margin = 0.6 * _circumradius(category, apothem)  # centres this close to the border give border-cut objects
    row, col = rng.uniform(margin, image_size - margin, size=2)
    return _Shape(category, (float(row), float(col)), apothem, angle)


def _rasterize(shape: _Shape, image_size: int) -> _Raster:
    extent = shape.circumradius + WINDOW_PAD
    (top, bottom), (left, right) = ((math.floor(c - extent), math.ceil(c + extent)) for c in shape.center)
    rows = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(left, right, dtype=np.float32)[None, :] + 0.5
    distance = shape.signed_distance(rows, cols)
    full_area = int((distance <= 0).sum())
    r0, r1, c0, c1 = max(top, 0), min(bottom, image_size), max(left, 0), min(right, image_size)
    inner = distance[r0 - top : r1 - top, c0 - left : c1 - left]
    grid = (rows[r0 - top : r1 - top], cols[:, c0 - left : c1 - left])
    return _Raster(shape, slice(r0, r1), slice(c0, c1), grid, inner, full_area)


def _fits(raster: _Raster, visible_after: np.ndarray, full_areas: np.ndarray, min_visible: float) -> bool:
    inside = int(raster.mask.sum())
    if raster.full_area == 0 or inside < max(MIN_INSIDE, min_visible) * raster.full_area:
        return False
    return bool(np.all(visible_after >= min_visible * full_areas))


def _pick_color(rng: np.random.Generator, raster: _Raster, canvas: _Canvas) -> tuple[str, np.ndarray] | None:
    """A palette colour (name, jittered RGB) unlike the pixels around the shape and unused by the objects it
    touches, or None."""
    ring = (raster.distance > 0) & (raster.distance <= EDGE_RING)
    around = canvas.image[raster.rows, raster.cols][ring]
    touching = canvas.instance[raster.rows, raster.cols][raster.distance <= EDGE_RING]
    taken = {canvas.colors[i - 1] for i in np.unique(touching) if i}
    scale, wash, shift = rng.uniform(0.8, 1.08), rng.uniform(0, 0.4), rng.uniform(-0.04, 0.04, size=3)
    for name in rng.permutation(list(PALETTE)):
        if name in taken:
            continue
        rgb = np.asarray(PALETTE[name], dtype=np.float32) / 255
        rgb = (scale * (rgb + wash * (rgb.mean() - rgb)) + shift).astype(np.float32)
        if around.size == 0 or np.mean(np.linalg.norm(around - rgb, axis=1) < MIN_CONTRAST) <= 0.1:
            return str(name), rgb
    return None


def _paint(rng: np.random.Generator, canvas: _Canvas, raster: _Raster, rgb: np.ndarray) -> None:
    """Cast the shadow, then paint the shaded, noisy fill with anti-aliased edges (in place)."""
    window, light = canvas.image[raster.rows, raster.cols], canvas.light
    rows, cols = raster.grid
    if light.opacity:
        shadow = raster.shape.signed_distance(rows - light.offset[0], cols - light.offset[1])
        window *= 1 - light.opacity * np.clip((light.blur - shadow) / (2 * light.blur), 0, 1)[..., None]
    coverage = np.clip(0.5 - raster.distance, 0, 1)[..., None]
    window += coverage * (_fill(rng, raster, rgb) - window)


def _fill(rng: np.random.Generator, raster: _Raster, rgb: np.ndarray) -> np.ndarray:
    """The object colour with a linear shading across the shape and fine noise."""
    rows, cols = raster.grid
    direction = rng.uniform(0, 2 * math.pi)
    center, radius = raster.shape.center, raster.shape.circumradius
    along = ((rows - center[0]) * math.sin(direction) + (cols - center[1]) * math.cos(direction)) / radius
    shading = 1 + rng.uniform(0.05, 0.25) * along
    return rgb * shading[..., None] + _grain(rng, (*raster.distance.shape, 3), rng.uniform(0.0, 0.035))


def _sample_light(rng: np.random.Generator) -> _Light:
    """No shadows in 40 % of scenes; otherwise one light direction, softness and strength for all objects."""
    if rng.random() < 0.4:
        return _Light((0.0, 0.0), 1.0, 0.0)
    direction, distance = rng.uniform(0, 2 * math.pi), rng.uniform(1.5, 4.0)
    offset = (distance * math.sin(direction), distance * math.cos(direction))
    return _Light(offset, rng.uniform(1.5, 3.0), rng.uniform(0.15, 0.35))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] float32 in about [0, 1]: two colours blended by a ramp and a noise field, a third in
    blotches, brightness variation, a faint pattern. Smooth everywhere, so nothing in it looks like a shape."""
    first, second, blotch = (_background_color(rng) for _ in range(3))
    weight = rng.uniform(0, 1)
    blend = weight * _ramp(rng, size) + (1 - weight) * _noise_field(rng, size, int(rng.integers(2, 5)))
    image = first + blend[..., None] * (second - first)
    blotches = _noise_field(rng, size, int(rng.integers(3, 7))) ** 2 * rng.uniform(0, 0.7)
    image += blotches[..., None] * (blotch - image)
    brightness = 2 * _noise_field(rng, size, int(rng.integers(6, 16))) - 1
    image *= 1 + rng.uniform(0.03, 0.12) * brightness[..., None]
    return image + _pattern(rng, size)[..., None] * rng.uniform(0.6, 1.0, size=3).astype(np.float32)


def _background_color(rng: np.random.Generator) -> np.ndarray:
    """Either a palette colour washed towards a grey, or a grey tinted at random."""
    grey = rng.uniform(0.15, 0.9)
    if rng.random() < 0.75:
        rgb = np.asarray(list(PALETTE.values())[int(rng.integers(len(PALETTE)))], dtype=np.float32) / 255
        return (rgb + rng.uniform(0.0, 0.5) * (grey - rgb)).astype(np.float32)
    return np.clip(grey + rng.uniform(-0.12, 0.12, size=3), 0, 1).astype(np.float32)


def _noise_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1]: random values on a ``cells`` grid, cubic B-spline interpolated."""
    weights = _bspline_matrix(size, cells)
    field = weights @ rng.random((cells + 3, cells + 3), dtype=np.float32) @ weights.T
    low, high = field.min(), field.max()
    return (field - low) / max(high - low, 1e-6)


def _bspline_matrix(size: int, cells: int) -> np.ndarray:
    """[size, cells + 3] weights of the four control points around each pixel centre (C2-smooth, no blocks)."""
    position = (np.arange(size, dtype=np.float32) + 0.5) * cells / size
    lower = np.minimum(position.astype(np.int64), cells - 1)
    t = position - lower
    weights = np.zeros((size, cells + 3), dtype=np.float32)
    pixels = np.arange(size)
    weights[pixels, lower] = (1 - t) ** 3 / 6
    weights[pixels, lower + 1] = (3 * t**3 - 6 * t**2 + 4) / 6
    weights[pixels, lower + 2] = (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6
    weights[pixels, lower + 3] = t**3 / 6
    return weights


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear gradient from 0 to 1 across the image in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    coords = np.arange(size, dtype=np.float32)
    along = coords[:, None] * math.sin(angle) + coords[None, :] * math.cos(angle)
    return (along - along.min()) / (along.max() - along.min())


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """Faint sinusoidal stripes, a faint egg-crate (smooth checker) or nothing, as a [-a, a] offset."""
    kind = int(rng.integers(3))
    if kind == 0:
        return np.zeros((size, size), dtype=np.float32)
    angle, period, amplitude = rng.uniform(0, math.pi), rng.uniform(4, 16), rng.uniform(0.02, 0.06)
    coords = np.arange(size, dtype=np.float32)
    u = coords[:, None] * math.sin(angle) + coords[None, :] * math.cos(angle)
    wave = np.sin(2 * math.pi * u / period)
    if kind == 2:
        v = coords[:, None] * math.cos(angle) - coords[None, :] * math.sin(angle)
        wave *= np.sin(2 * math.pi * v / period)
    return amplitude * wave


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Global illumination falloff and sensor grain over everything, then 8-bit RGB."""
    size = image.shape[0]
    image *= 1 + rng.uniform(0, 0.15) * (2 * _ramp(rng, size) - 1)[..., None]
    image += _grain(rng, image.shape, rng.uniform(0.004, 0.02))
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def _grain(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean uniform noise of standard deviation ``std`` (looks like Gaussian grain, is 5x cheaper to draw)."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * np.float32(std * math.sqrt(12))


def _tight_boxes(instance: np.ndarray, count: int) -> list[tuple[float, float, float, float]]:
    """(xmin, ymin, xmax + 1, ymax + 1) of each object's visible pixels."""
    boxes = []
    for label in range(1, count + 1):
        pixels = instance == label
        rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
        boxes.append((float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)))
    return boxes
