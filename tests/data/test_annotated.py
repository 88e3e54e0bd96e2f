"""COCO / VOC / YOLO / shapes datamodules: the same images give the same targets through every reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vision_research.data import create_datamodule
from vision_research.data.coco import CocoDataModule
from vision_research.data.scenes import render_scene
from vision_research.data.shapes import SPLIT_SEEDS, ShapesDataModule, generate_shapes
from vision_research.data.voc import VOCDataModule
from vision_research.data.yolo import YoloDataModule
from vision_research.errors import ConfigError, DataError
from vision_research.geometry import boxes_to_original

SMALL = {"num_train": 12, "num_val": 6, "num_test": 4, "image_size": 64, "seed": 3}
COCO128 = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco128-train"


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "data", **SMALL)


def shapes(root: Path, **options) -> ShapesDataModule:
    generation = {k: v for k, v in SMALL.items() if k != "image_size"}
    options = {"num_workers": 0, "augment": "none", **options}
    return ShapesDataModule(root=str(root), scene_size=64, **generation, **options)


def test_the_three_layouts_give_the_same_targets(shapes_root):
    readers = {fmt: shapes(shapes_root, annotation_format=fmt).dataset("val") for fmt in ("coco", "voc", "yolo")}
    for index in range(SMALL["num_val"]):
        (image, coco), (image_voc, voc), (_, yolo) = (readers[f][index] for f in ("coco", "voc", "yolo"))
        assert torch.equal(image, image_voc)
        for other in (voc, yolo):
            assert torch.equal(coco["labels"], other["labels"])
            torch.testing.assert_close(coco["boxes"], other["boxes"], atol=1e-3, rtol=0)


def test_boxes_and_masks_equal_the_rendered_scenes(shapes_root):
    """Independent check: re-render the validation scenes and compare with what the datamodules read back."""
    rng = np.random.default_rng([SMALL["seed"], SPLIT_SEEDS["val"]])
    scenes = [render_scene(rng, image_size=64, max_objects=4) for _ in range(SMALL["num_val"])]
    detection = shapes(shapes_root).dataset("val")
    coco_masks = shapes(shapes_root, task="segmentation").dataset("val")
    voc_masks = shapes(shapes_root, task="segmentation", annotation_format="voc").dataset("val")
    for index, scene in enumerate(scenes):
        image, target = detection[index]
        assert torch.equal(image, torch.from_numpy(scene.image).permute(2, 0, 1))
        np.testing.assert_allclose(target["boxes"].numpy(), np.array(scene.boxes).reshape(-1, 4))
        expected = torch.from_numpy(scene.semantic_mask())
        assert torch.equal(coco_masks[index][1], expected)
        assert torch.equal(voc_masks[index][1], expected)


def test_batches_are_normalised_on_the_device_and_targets_follow_torchvision(shapes_root):
    data = shapes(shapes_root, batch_size=4, augment="standard")
    assert data.num_classes == 3 and data.class_names == ("circle", "square", "triangle")
    images, targets = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert -3 < images.mean() < 3
    for target in targets:
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
        assert target["labels"].dtype == torch.int64 and len(target["labels"]) == len(target["boxes"])
        assert {"difficult", "iscrowd", "image_id", "orig_size"} <= set(target)
        assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
        assert (target["boxes"] >= 0).all() and (target["boxes"] <= 64).all()
    segmentation = shapes(shapes_root, batch_size=4, task="segmentation")
    images, masks = next(iter(segmentation.train_dataloader()))
    assert masks.shape == (4, 64, 64) and masks.dtype == torch.uint8  # a quarter of the bytes to transfer
    images, masks = segmentation.on_after_batch_transfer((images, masks), 0)
    assert images.dtype == torch.float32 and masks.dtype == torch.int64
    assert segmentation.num_classes == 4 and segmentation.class_names[0] == "background"


def test_collated_targets_equal_the_items(shapes_root):
    data = shapes(shapes_root, eval_batch_size=4)
    images, targets = next(iter(data.val_dataloader()))
    assert images.is_contiguous()
    for index, target in enumerate(targets):
        image, item = data.dataset("val")[index]
        assert torch.equal(images[index], image)
        for key in ("boxes", "labels", "difficult", "iscrowd", "orig_size"):
            assert torch.equal(target[key], item[key]), key
        assert target["image_id"] == item["image_id"] == index + 1


def test_generation_is_deterministic_and_reused(shapes_root, tmp_path):
    again = generate_shapes(tmp_path / "again", **SMALL)
    for name in (
        "annotations/instances_val.json",
        "YOLO/labels/train/train_00003.txt",
        "VOC/Annotations/test_00001.xml",
    ):
        assert (again / name).read_bytes() == (shapes_root / name).read_bytes()
    assert (again / "images/val/val_00002.png").read_bytes() == (shapes_root / "images/val/val_00002.png").read_bytes()
    assert generate_shapes(again, **SMALL) == again
    with pytest.raises(ConfigError, match="other parameters"):
        generate_shapes(again, **{**SMALL, "seed": 4})


def test_missing_val_split_is_cut_from_train_and_test_falls_back_to_val(shapes_root, tmp_path):
    data = CocoDataModule(str(shapes_root), splits={"train": "train", "val": None}, num_workers=0, val_fraction=0.25)
    train, val = data.annotations("train"), data.annotations("val")
    assert (len(train.images), len(val.images)) == (9, 3)
    assert not {r.file_name for r in train.images} & {r.file_name for r in val.images}
    assert data.annotations("test") is val


def test_coco_category_ids_map_to_labels_and_back(tmp_path, shapes_root):
    data = json.loads((shapes_root / "annotations/instances_val.json").read_text())
    new_ids = {1: 17, 2: 5, 3: 88}  # ids with gaps, not in label order
    for category in data["categories"]:
        category["id"] = new_ids[category["id"]]
    for annotation in data["annotations"]:
        annotation["category_id"] = new_ids[annotation["category_id"]]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances_val.json").write_text(json.dumps(data))
    shutil.copytree(shapes_root / "images/val", tmp_path / "images/val")
    module = CocoDataModule(str(tmp_path), splits={"train": "val", "val": "val"}, num_workers=0, augment="none")
    annotations = module.annotations("val")
    assert annotations.categories == ["square", "circle", "triangle"]  # sorted by category id: 5, 17, 88
    assert annotations.category_ids == [5, 17, 88]
    _, target = module.dataset("val")[0]
    names = [annotations.categories[label] for label in target["labels"]]
    original = shapes(shapes_root).dataset("val")[0][1]
    assert names == [("circle", "square", "triangle")[label] for label in original["labels"]]


def test_voc_difficult_objects_are_kept_and_flagged(tmp_path, shapes_root):
    root = tmp_path / "VOC"
    shutil.copytree(shapes_root / "VOC", root)
    xml = root / "Annotations/val_00000.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    data = VOCDataModule(str(root), class_names=["circle", "square", "triangle"], num_workers=0, augment="none")
    _, target = data.dataset("val")[0]
    assert target["difficult"].tolist()[0] is True and not target["difficult"][1:].any()


def test_segmentation_mask_with_unknown_class_names_the_file(tmp_path, shapes_root):
    from vision_research.data.formats import save_mask_png

    root = tmp_path / "VOC"
    shutil.copytree(shapes_root / "VOC", root)
    save_mask_png(np.full((64, 64), 9, dtype=np.uint8), root / "SegmentationClass/val_00001.png")
    data = VOCDataModule(
        str(root), task="segmentation", class_names=["circle", "square", "triangle"], num_workers=0, augment="none"
    )
    with pytest.raises(DataError, match=r"val_00001\.png: class indices \[9\] are outside 0\.\.3"):
        data.dataset("val")[1]


def test_corrupt_image_is_named_when_loaded(tmp_path, shapes_root):
    root = tmp_path / "data"
    shutil.copytree(shapes_root, root, ignore=shutil.ignore_patterns("VOC", "YOLO"))
    (root / "images/val/val_00002.png").write_bytes(b"not a png")
    dataset = CocoDataModule(str(root), splits={"train": "train", "val": "val"}, num_workers=0).dataset("val")
    with pytest.raises(DataError, match=r"val_00002\.png: cannot read the image .*referenced by .*image id 3"):
        dataset[2]


def test_missing_roots_say_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"COCO root not found \(expected annotations/instances_<split>\.json"):
        CocoDataModule(str(tmp_path / "none"))
    with pytest.raises(DataError, match="not a Pascal VOC folder"):
        VOCDataModule(str(tmp_path / "none"))
    with pytest.raises(DataError, match="not a YOLO dataset folder"):
        YoloDataModule(str(tmp_path / "none"))
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances_x.json").write_text("{}")
    with pytest.raises(
        DataError, match=r"instances_train2017\.json: COCO annotation file not found.*found: instances_x"
    ):
        CocoDataModule(str(tmp_path)).annotations("train")


def test_registered_by_name_with_option_checking(shapes_root):
    assert isinstance(create_datamodule("coco", root=str(shapes_root), num_workers=0), CocoDataModule)
    with pytest.raises(ConfigError, match="image_sise"):
        create_datamodule("coco", root=str(shapes_root), image_sise=64)
    with pytest.raises(ConfigError, match="data.task must be one of detection, segmentation"):
        create_datamodule("coco", root=str(shapes_root), task="detect")


@pytest.mark.skipif(not COCO128.is_dir(), reason=f"optional real data not present: {COCO128}")
def test_coco128_gives_the_same_boxes_through_all_three_datamodules():
    options = {"augment": "none", "image_size": 320, "num_workers": 0}
    coco = CocoDataModule(
        str(COCO128), splits={"train": "annotations/instances.json", "val": "annotations/instances.json"}, **options
    )
    voc = VOCDataModule(
        str(COCO128 / "VOC"), splits={"train": "train", "val": "train"}, class_names=coco.class_names, **options
    )
    with pytest.warns(match="degenerate box"):  # three sub-pixel boxes in the YOLO export, absent from the others
        yolo = YoloDataModule(
            str(COCO128), splits={"train": None}, class_names=coco.class_names, val_fraction=0.5, **options
        )
        yolo.annotations("train")
    yolo_by_name = {r.file_name: r for split in ("train", "val") for r in yolo.annotations(split).images}
    coco_set = coco.annotations("val")
    datasets = [m.dataset("val") for m in (coco, voc)]
    total = 0
    for index, record in enumerate(coco_set.images):
        (_, a), (_, b) = (d[index] for d in datasets)
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=0.5 + 1e-4, rtol=0)  # VOC's integer corners
        original = boxes_to_original(a["boxes"], record.height, record.width, 320)
        expected = np.array([o.box for o in record.objects], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_allclose(np.asarray(original), expected, atol=1e-3)
        yolo_boxes = np.array([o.box for o in yolo_by_name[record.file_name].objects]).reshape(-1, 4)
        np.testing.assert_allclose(yolo_boxes, expected, atol=0.02)
        total += len(a["boxes"])
    assert total == 926


@pytest.mark.skipif(not COCO128.is_dir(), reason=f"optional real data not present: {COCO128}")
def test_coco128_masks_load_through_the_voc_segmentation_path():
    data = VOCDataModule(
        str(COCO128 / "VOC"), task="segmentation", splits={"train": "train", "val": None}, num_classes=201,
        image_size=160, batch_size=4, num_workers=0,
    )  # fmt: skip
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 160, 160) and masks.shape == (4, 160, 160)
    assert len(data.annotations("train").images) == 90
    assert (masks == 255).any()  # the letterbox pads non-square photos with "ignore"
    assert 0 < masks[masks != 255].max() <= 200  # COCO panoptic ids of the source PNGs
