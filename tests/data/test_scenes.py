"""The synthetic shapes renderer: determinism, exact labels, visibility, geometry, colours independent of class."""

import math

import numpy as np
import pytest

from vision_research.data.scenes import PALETTE, SHAPE_CLASSES, Scene, render_scene
from vision_research.errors import ConfigError

SIZE = 128
AREA_PER_SIZE_SQUARED = {"circle": math.pi / 4, "square": 1.0, "triangle": math.sqrt(3) / 4}


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [render_scene(np.random.default_rng(seed)) for seed in range(200)]


def objects(scenes: list[Scene]):
    """(scene, index, visible pixel mask) of every object."""
    for scene in scenes:
        for k in range(len(scene.categories)):
            yield scene, k, scene.instance_mask == k + 1


def touches_border(box) -> bool:
    return box[0] == 0 or box[1] == 0 or box[2] == SIZE or box[3] == SIZE


def border_pixels(mask: np.ndarray) -> np.ndarray:
    """The pixels 4-adjacent to ``mask`` but outside it."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out & ~mask


def best_threshold_accuracy(feature: np.ndarray, positive: np.ndarray) -> float:
    """Balanced accuracy of the best single threshold on an 8-bit feature, in either direction."""
    pos = np.cumsum(np.bincount(feature[positive], minlength=256)) / positive.sum()
    neg = np.cumsum(np.bincount(feature[~positive], minlength=256)) / (~positive).sum()
    accuracy = 0.5 * (neg + 1 - pos)  # negatives at or below the threshold, positives above
    return float(max(accuracy.max(), (1 - accuracy).max()))


def test_same_seed_gives_the_same_scene_and_seeds_differ():
    a, b = render_scene(np.random.default_rng(7)), render_scene(np.random.default_rng(7))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.instance_mask, b.instance_mask)
    assert (a.categories, a.boxes, a.full_areas, a.colors) == (b.categories, b.boxes, b.full_areas, b.colors)
    c = render_scene(np.random.default_rng(8))
    assert np.abs(a.image.astype(int) - c.image).mean() > 10


def test_one_generator_gives_a_sequence_of_different_scenes_starting_with_the_seeded_one():
    rng = np.random.default_rng(3)
    sequence = [render_scene(rng).image for _ in range(3)]
    np.testing.assert_array_equal(sequence[0], render_scene(np.random.default_rng(3)).image)
    assert not np.array_equal(sequence[1], sequence[2])


def test_arrays_have_the_documented_types_and_shapes():
    scene = render_scene(np.random.default_rng(0), image_size=96)
    assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
    assert scene.instance_mask.shape == (96, 96) and scene.instance_mask.dtype == np.int32
    assert scene.semantic_mask().dtype == np.uint8
    assert len(scene.categories) == len(scene.boxes) == len(scene.full_areas) == len(scene.colors)


def test_every_box_is_the_tight_box_of_its_visible_pixels(scenes):
    for scene, k, mask in objects(scenes):
        rows, cols = np.nonzero(mask)
        assert scene.boxes[k] == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_instance_ids_are_exactly_the_objects(scenes):
    for scene in scenes:
        assert set(np.unique(scene.instance_mask)) == set(range(len(scene.categories) + 1))


def test_every_object_keeps_min_visible_of_its_area(scenes):
    fractions = [mask.sum() / scene.full_areas[k] for scene, k, mask in objects(scenes)]
    assert min(fractions) >= 0.6
    assert np.mean(np.array(fractions) < 0.95) > 0.1  # occlusion and border cuts do happen


def test_stricter_min_visible_is_honoured():
    for seed in range(40):
        scene = render_scene(np.random.default_rng(seed), max_objects=6, min_visible=0.9)
        for k, area in enumerate(scene.full_areas):
            assert (scene.instance_mask == k + 1).sum() >= 0.9 * area


def test_full_area_is_the_visible_area_of_a_lone_object_inside_the_image(scenes):
    lone = [(s, mask) for s, k, mask in objects(scenes) if len(s.categories) == 1 and not touches_border(s.boxes[0])]
    assert len(lone) > 10
    for scene, mask in lone:
        assert scene.full_areas[0] == mask.sum()


def test_some_objects_are_cut_by_the_border_and_some_are_occluded(scenes):
    cut = [touches_border(s.boxes[k]) for s, k, _ in objects(scenes)]
    occluded = [mask.sum() < s.full_areas[k] and not touches_border(s.boxes[k]) for s, k, mask in objects(scenes)]
    assert 0.1 < np.mean(cut) < 0.5
    assert np.mean(occluded) > 0.05


def test_sizes_are_within_the_requested_range(scenes):
    for scene, k, _ in objects(scenes):
        size = math.sqrt(scene.full_areas[k] / AREA_PER_SIZE_SQUARED[scene.categories[k]])
        assert 0.15 * SIZE - 1.5 <= size <= 0.45 * SIZE + 1.5


def test_class_is_the_geometry(scenes):
    """Of its bounding box a whole triangle fills at most half, a circle pi / 4, a square at least half."""
    fills = {name: [] for name in SHAPE_CLASSES}
    for scene, k, mask in objects(scenes):
        if mask.sum() == scene.full_areas[k]:  # neither occluded nor cut
            x0, y0, x1, y1 = scene.boxes[k]
            fills[scene.categories[k]].append(mask.sum() / ((x1 - x0) * (y1 - y0)))
    assert max(fills["triangle"]) < 0.56
    assert min(fills["circle"]) > 0.72 and max(fills["circle"]) < 0.85
    assert min(fills["square"]) > 0.48 and np.mean(fills["square"]) > 0.6  # 2 / pi on average over rotations


def test_semantic_mask_is_the_instance_mask_labelled_by_class(scenes):
    for scene in scenes[:50]:
        semantic = scene.semantic_mask()
        np.testing.assert_array_equal(semantic == 0, scene.instance_mask == 0)
        for k, category in enumerate(scene.categories):
            assert np.all(semantic[scene.instance_mask == k + 1] == 1 + SHAPE_CLASSES.index(category))


def test_object_counts_stay_within_bounds(scenes):
    assert {len(s.categories) for s in scenes} == {1, 2, 3, 4}
    for seed in range(30):
        assert 2 <= len(render_scene(np.random.default_rng(seed), min_objects=2, max_objects=3).categories) <= 3


def test_every_class_appears_and_every_colour_is_used_by_several_classes(scenes):
    pairs = {(scene.categories[k], scene.colors[k]) for scene, k, _ in objects(scenes)}
    assert {category for category, _ in pairs} == set(SHAPE_CLASSES)
    for color in PALETTE:
        assert len({category for category, c in pairs if c == color}) > 1, color


def test_touching_objects_never_share_a_colour(scenes):
    pairs = 0
    for scene, k, mask in objects(scenes):
        for other in set(np.unique(scene.instance_mask[border_pixels(mask)])) - {0}:
            assert scene.colors[other - 1] != scene.colors[k]
            pairs += 1
    assert pairs > 50


def test_objects_contrast_with_the_background_around_them(scenes):
    checked = 0
    for scene, _, mask in objects(scenes):
        ring = border_pixels(mask | border_pixels(mask)) & (scene.instance_mask == 0)
        if ring.sum() >= 10:
            inside, around = scene.image[mask].mean(0), scene.image[ring].mean(0)
            assert np.linalg.norm(inside - around) > 0.15 * 255
            checked += 1
    assert checked > 300


def test_colour_names_match_the_painted_pixels(scenes):
    palette = np.array(list(PALETTE.values()), dtype=float)
    names = list(PALETTE)
    hits = [
        names[np.argmin(np.linalg.norm(palette - scene.image[mask].mean(0), axis=1))] == scene.colors[k]
        for scene, k, mask in objects(scenes)
    ]
    assert np.mean(hits) > 0.8


def test_no_single_colour_threshold_separates_objects_from_background(scenes):
    pixels = np.concatenate([s.image.reshape(-1, 3) for s in scenes[:100]]).astype(np.int64)
    positive = np.concatenate([s.instance_mask.ravel() > 0 for s in scenes[:100]])
    features = {
        "red": pixels[:, 0],
        "green": pixels[:, 1],
        "blue": pixels[:, 2],
        "brightness": pixels.sum(1) // 3,
        "chroma": pixels.max(1) - pixels.min(1),
    }
    for name, feature in features.items():
        assert best_threshold_accuracy(feature, positive) < 0.85, name


@pytest.mark.parametrize(
    "kwargs",
    [{"min_objects": 3, "max_objects": 2}, {"min_size": 0.5, "max_size": 0.4}, {"min_visible": 0}, {"image_size": 8}],
)
def test_bad_arguments_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        render_scene(np.random.default_rng(0), **kwargs)


def test_impossible_crowding_is_a_config_error():
    with pytest.raises(ConfigError, match="could not place"):
        render_scene(np.random.default_rng(0), min_objects=12, max_objects=12, min_size=0.45, max_size=0.45)
