"""Annotation readers never corrupt data silently: duplicate COCO ids, missing YOLO labels, stray VOC names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from vision_research.cli import main
from vision_research.data.annotations import AnnotationSet, DataWarning, ImageRecord, ObjectAnnotation
from vision_research.data.coco import CocoDataModule
from vision_research.data.formats import VOC_CLASSES, coco_dict, convert, read_annotations, read_coco, read_voc
from vision_research.data.shapes import generate_shapes
from vision_research.data.voc import VOCDataModule
from vision_research.data.yolo import YoloDataModule
from vision_research.errors import ConfigError, DataError
from vision_research.metrics.coco import coco_evaluate

OPTIONS = {"num_workers": 0, "augment": "none", "image_size": 32}


def _png(path: Path, width: int = 32, height: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)


# ---------------------------------------------------------------------------------------------- COCO


def _coco(tmp_path: Path, images: list, annotations: list, categories: list) -> Path:
    for image in images:
        _png(tmp_path / "images" / image["file_name"])
    path = tmp_path / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _image(image_id: int, name: str) -> dict:
    return {"id": image_id, "file_name": name, "width": 32, "height": 24}


def _box(ann_id: int, image_id: int, bbox: list[float]) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}


DOG = [{"id": 1, "name": "dog"}]


def test_duplicate_coco_image_ids_name_the_file_the_id_and_both_images(tmp_path):
    path = _coco(tmp_path, [_image(7, "a.png"), _image(7, "b.png")], [_box(1, 7, [1, 1, 5, 5])], DOG)
    for read in (lambda: read_coco(path), lambda: convert(path, "coco", tmp_path / "out", "yolo")):
        with pytest.raises(DataError, match="image id 7 is used twice") as caught:
            read()
        assert str(path) in str(caught.value) and "'a.png'" in str(caught.value) and "'b.png'" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_duplicate_coco_annotation_ids_are_an_error_when_read_and_when_scored(tmp_path):
    boxes = [_box(1, 1, [1, 1, 10, 10]), _box(1, 1, [15, 5, 12, 15]), _box(2, 2, [3, 3, 20, 18])]
    path = _coco(tmp_path, [_image(1, "a.png"), _image(2, "b.png")], boxes, DOG)
    with pytest.raises(DataError, match=f"{path}: annotation id 1 is used twice"):
        read_coco(path)
    perfect = [{"image_id": b["image_id"], "category_id": 1, "bbox": b["bbox"], "score": 0.9} for b in boxes]
    ground_truth = json.loads(path.read_text())
    with pytest.raises(DataError, match="annotation id 1 is used twice"):
        coco_evaluate(ground_truth, perfect, backend="pycocotools")
    for n, ann in enumerate(ground_truth["annotations"], start=1):
        ann["id"] = n
    assert coco_evaluate(ground_truth, perfect, backend="pycocotools")["map"] == pytest.approx(1.0)


def test_duplicate_coco_category_ids_name_the_id_and_both_names(tmp_path):
    categories = [{"id": 3, "name": "dog"}, {"id": 3, "name": "cat"}]
    path = _coco(tmp_path, [_image(1, "a.png")], [{**_box(1, 1, [1, 1, 5, 5]), "category_id": 3}], categories)
    with pytest.raises(DataError, match=r"category id 3 is used twice.*'dog'.*'cat'") as caught:
        read_coco(path)
    assert str(path) in str(caught.value)


def test_coco_ground_truth_built_from_records_rejects_repeated_image_ids(tmp_path):
    objects = [ObjectAnnotation((1, 1, 9, 9), "dog")]
    records = [ImageRecord("a.png", 32, 24, list(objects), image_id=4), ImageRecord("b.png", 32, 24, list(objects))]
    records[1].image_id = 4
    with pytest.raises(DataError, match=r"records: image id 4 is used twice.*'a.png'.*'b.png'"):
        coco_dict(AnnotationSet(records, ["dog"], tmp_path, source="records"))
    records[1].image_id = 5
    data = coco_dict(AnnotationSet(records, ["dog"], tmp_path, source="records"))
    assert [a["id"] for a in data["annotations"]] == [1, 2]


def _segmented(tmp_path: Path, segmentation: object) -> Path:
    """A COCO file of one 32×24 image with one object, annotation id 5, of ``segmentation``."""
    return _coco(tmp_path, [_image(1, "a.png")], [{**_box(5, 1, [2, 2, 10, 10]), "segmentation": segmentation}], DOG)


def _compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def test_coco_rle_of_another_size_than_its_image_is_an_error_at_set_up(tmp_path):
    path = _segmented(tmp_path, _compressed_rle(np.ones((48, 64))))
    data = CocoDataModule(str(tmp_path), task="segmentation", splits={"train": "train", "val": "train"}, **OPTIONS)
    with pytest.raises(DataError) as caught:
        data.setup("fit")
    assert str(caught.value) == (
        f"{path}: annotation id 5 of image a.png: RLE size [48, 64] differs from the image's [24, 32] (height, width)"
    )


@pytest.mark.parametrize(
    ("counts", "problem"),
    [
        ([5, 10, 3], "RLE counts cover 18 pixels but the 32×24 image has 768"),
        ([5, 10, 3000], "RLE counts cover 3015 pixels but the 32×24 image has 768"),
        ("5:3", "RLE counts cover 18 pixels but the 32×24 image has 768"),  # [5, 10, 3] compressed
        ("garbage!!", "malformed compressed RLE counts (character 'r' is outside '0'..'o')"),
    ],
    ids=["short list", "long list", "short string", "garbage string"],
)
def test_coco_rle_counts_must_cover_the_image(tmp_path, counts, problem):
    path = _segmented(tmp_path, {"size": [24, 32], "counts": counts})
    with pytest.raises(DataError) as caught:
        read_coco(path)
    assert str(caught.value) == f"{path}: annotation id 5 of image a.png: {problem}"


@pytest.mark.parametrize("polygon", [[2, 2, 12, 2, 12], [2, 2, 12, 2]], ids=["odd count", "two points"])
def test_coco_polygon_needs_three_points_and_an_even_count(tmp_path, polygon):
    path = _segmented(tmp_path, [[2, 2, 12, 2, 12, 12], polygon])
    with pytest.raises(DataError) as caught:
        read_coco(path)
    assert str(caught.value) == (
        f"{path}: annotation id 5 of image a.png: polygon 1 has {len(polygon)} values; "
        "a polygon needs at least 3 points (6 values) and an even count"
    )


# ---------------------------------------------------------------------------------------------- YOLO


def _yolo(root: Path, labels: dict[str, str | None], label_folder: str = "labels") -> Path:
    """images/train/<name>.png for each entry; a label file with the text, none for None (val: one labelled image)."""
    for name, text in labels.items():
        _png(root / "images" / "train" / f"{name}.png")
        if text is not None:
            (root / label_folder / "train").mkdir(parents=True, exist_ok=True)
            (root / label_folder / "train" / f"{name}.txt").write_text(text)
    _png(root / "images" / "val" / "v.png")
    (root / label_folder / "val").mkdir(parents=True, exist_ok=True)
    (root / label_folder / "val" / "v.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "classes.txt").write_text("dog\n")
    return root


def test_yolo_label_folder_not_found_is_an_error_naming_the_folder_looked_in(tmp_path):
    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.3 0.3 0.2 0.2\n"}, label_folder="label")
    with pytest.raises(DataError, match=r"labels/train: no label file for any of the 2 images.*does not exist") as e:
        YoloDataModule(str(root), **OPTIONS).annotations("train")
    assert "label/" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="labels/train: no label file"):
        read_annotations(root, "yolo", "train")


def test_yolo_images_partly_without_label_files_are_background_with_a_warning(tmp_path):
    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "", "c": None})
    with pytest.warns(DataWarning, match="1 of 3 images .* have no label file"):
        train = YoloDataModule(str(root), **OPTIONS).annotations("train")
    assert [len(r.objects) for r in train.images] == [1, 0, 0]  # an image without objects is legal


def test_detection_split_without_any_object_is_an_error(tmp_path):
    root = _yolo(tmp_path, {"a": "", "b": "\n"})
    with pytest.raises(DataError, match=r"labels/train: the train split's 2 images have no objects at all"):
        YoloDataModule(str(root), **OPTIONS).annotations("train")


def _voc_segmentation(root: Path) -> Path:
    """A VOC root of one image, a.png, in ImageSets/Segmentation/train.txt."""
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    return root


def test_segmentation_split_without_objects_is_not_an_error(tmp_path):
    data = VOCDataModule(str(_voc_segmentation(tmp_path)), task="segmentation", splits={"val": "train"}, **OPTIONS)
    assert data.annotations("train").num_objects == 0 and data.num_classes == 21


# ----------------------------------------------------------------------------------------------- VOC


def _voc(root: Path, names: dict[str, list[str]]) -> Path:
    """One image per id with one object per name, listed in ImageSets/Main/train.txt."""
    (root / "Annotations").mkdir(parents=True)
    for image_id, objects in names.items():
        _png(root / "JPEGImages" / f"{image_id}.png")
        nodes = "".join(
            f"<object><name>{n}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>12</xmax><ymax>12</ymax></bndbox>"
            "</object>"
            for n in objects
        )
        xml = f"<annotation><filename>{image_id}.png</filename><size><width>32</width><height>24</height></size>"
        (root / "Annotations" / f"{image_id}.xml").write_text(xml + nodes + "</annotation>")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{i}\n" for i in names))
    return root


def test_voc_name_outside_the_voc_classes_is_an_error_suggesting_the_voc_name(tmp_path):
    root = _voc(tmp_path, {"a": ["dog"], "b": ["cat", "persn"]})
    with pytest.raises(DataError, match=r"b\.xml: object 1 has the unknown class name 'persn' \(did you mean person"):
        read_voc(root, "train")
    with pytest.raises(DataError, match="'persn'"):
        VOCDataModule(str(root), splits={"val": "train"}, **OPTIONS).annotations("train")
    assert read_voc(_voc(tmp_path / "ok", {"a": ["dog"], "b": ["person"]}), "train").categories == list(VOC_CLASSES)


def test_voc_class_names_discover_takes_the_sorted_names_found(tmp_path, capsys):
    root = _voc(tmp_path / "voc", {"a": ["dog"], "b": ["persn", "cat"]})
    assert read_voc(root, "train", class_names="discover").categories == ["cat", "dog", "persn"]
    config = OmegaConf.create({"class_names": "discover"})  # as data.class_names arrives from a config
    data = VOCDataModule(str(root), splits={"val": "train"}, class_names=config.class_names, **OPTIONS)
    assert data.class_names == ("cat", "dog", "persn")
    assert main(["convert", "voc", "coco", str(root), str(tmp_path / "coco"), "--class-names", "discover"]) == 0
    written = json.loads((tmp_path / "coco/annotations/instances_train.json").read_text())
    assert [c["name"] for c in written["categories"]] == ["cat", "dog", "persn"]


def test_voc_class_names_string_other_than_discover_is_a_config_error(tmp_path):
    root = _voc(tmp_path, {"a": ["dog"]})
    with pytest.raises(ConfigError, match=r"class_names must be a list of names or 'discover' .*; got 'dog'"):
        read_voc(root, "train", class_names="dog")
    with pytest.raises(ConfigError, match="discover"):
        VOCDataModule(str(root), task="segmentation", class_names="discover", **OPTIONS)


def test_voc_mask_class_names_leave_out_background_which_is_index_0(tmp_path):
    root = str(_voc_segmentation(tmp_path))
    options = {"task": "segmentation", "splits": {"val": "train"}, **OPTIONS}
    with pytest.raises(ConfigError) as caught:
        VOCDataModule(root, class_names=["background", "circle", "square", "triangle"], **options)
    assert str(caught.value) == (
        "data.class_names: index 0 of VOC masks is already background; list only the object classes "
        "(got ['background', 'circle', 'square', 'triangle'])"
    )
    data = VOCDataModule(root, class_names=["circle", "square", "triangle"], **options)
    assert data.class_names == ("background", "circle", "square", "triangle")


# -------------------------------------------------------------------------------------------- Shapes


def test_shapes_yolo_data_yaml_lists_each_split_folder(tmp_path):
    root = generate_shapes(tmp_path / "shapes", num_train=2, num_val=1, num_test=1, image_size=32)
    data = OmegaConf.to_container(OmegaConf.load(root / "YOLO" / "data.yaml"))
    assert {k: data[k] for k in ("train", "val", "test")} == {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
    }
    assert all((root / "YOLO" / data[k]).is_dir() for k in ("train", "val", "test"))
