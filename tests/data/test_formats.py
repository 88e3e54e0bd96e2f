"""VOC / COCO / YOLO read-write-convert: round trips keep every box, bad input names the file and problem."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision_research.data.annotations import AnnotationSet, DataWarning, ImageRecord, ObjectAnnotation
from vision_research.data.formats import (
    FORMATS,
    VOC_CLASSES,
    AnnotationFormat,
    check_format,
    coco_class_map,
    convert,
    read_annotations,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_voc,
)
from vision_research.data.images import load_rgb
from vision_research.data.stats import detect_format
from vision_research.errors import ConfigError, DataError


def _image(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_set(root: Path, integer_boxes: bool = True) -> AnnotationSet:
    """Three images: two objects (one difficult, one touching the border), one object, none."""
    sizes = [(64, 48), (50, 70), (40, 40)]
    for n, (w, h) in enumerate(sizes):
        _image(root / "images" / f"img{n}.png", w, h, seed=n)
    offset = 0.0 if integer_boxes else 0.37
    records = [
        ImageRecord(
            "img0.png",
            64,
            48,
            [
                ObjectAnnotation((3 + offset, 4, 30 + offset, 20), "dog", difficult=True),
                ObjectAnnotation((40, 10 + offset, 64, 48), "cat"),
            ],
        ),
        ImageRecord("img1.png", 50, 70, [ObjectAnnotation((0, 0, 12.5 if offset else 12, 33 + offset), "person")]),
        ImageRecord("img2.png", 40, 40, []),
    ]
    return AnnotationSet(records, list(VOC_CLASSES), image_dir=root / "images", source="test")


def boxes_of(annotations: AnnotationSet) -> list[list[tuple]]:
    return [[(o.category, o.difficult, *o.box) for o in r.objects] for r in annotations.images]


def test_voc_coco_voc_round_trip_keeps_every_box(tmp_path):
    original = make_set(tmp_path)
    write_voc(original, tmp_path / "voc", "train")
    convert(tmp_path / "voc", "voc", tmp_path / "coco", "coco", image_set="train")
    convert(tmp_path / "coco/annotations/instances_train.json", "coco", tmp_path / "voc2", "voc", image_set="train")
    for n in range(3):
        first = ET.parse(tmp_path / f"voc/Annotations/img{n}.xml").getroot()
        second = ET.parse(tmp_path / f"voc2/Annotations/img{n}.xml").getroot()
        assert ET.tostring(first) == ET.tostring(second)
    again = read_voc(tmp_path / "voc2", "train")
    assert boxes_of(again) == boxes_of(original)
    assert (tmp_path / "voc2/JPEGImages/img2.png").is_file()  # the image without objects is kept


def test_voc_corners_are_one_based_inclusive(tmp_path):
    write_voc(make_set(tmp_path), tmp_path / "voc", "train")
    box = ET.parse(tmp_path / "voc/Annotations/img0.xml").getroot().find("object/bndbox")
    assert [int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] == [4, 5, 30, 20]


def test_voc_to_coco_category_ids_are_stable(tmp_path):
    write_voc(make_set(tmp_path), tmp_path / "voc", "train")
    convert(tmp_path / "voc", "voc", tmp_path / "coco", "coco")
    data = json.loads((tmp_path / "coco/annotations/instances_train.json").read_text())
    ids = {c["name"]: c["id"] for c in data["categories"]}
    # All 20 VOC classes in their standard order, whichever appear: dog stays 12 in every split.
    assert ids == {name: i + 1 for i, name in enumerate(VOC_CLASSES)}
    assert sorted(a["category_id"] for a in data["annotations"]) == [8, 12, 15]
    assert [a.get("difficult", 0) for a in data["annotations"]] == [1, 0, 0]


def test_coco_yolo_coco_round_trip_keeps_every_box(tmp_path):
    original = make_set(tmp_path, integer_boxes=False)
    write_coco(original, tmp_path / "a.json")
    report = convert(tmp_path / "a.json", "coco", tmp_path / "yolo", "yolo", image_dir=tmp_path / "images")
    assert (report.images, report.objects) == (3, 3)
    assert (tmp_path / "yolo/labels/train/img2.txt").read_text() == ""  # ultralytics layout: labels/<set>/
    convert(tmp_path / "yolo", "yolo", tmp_path / "coco", "coco")
    back = read_coco(tmp_path / "coco/annotations/instances_train.json")
    for first, second in zip(boxes_of(original), boxes_of(back), strict=True):
        assert [b[:1] for b in first] == [b[:1] for b in second]
        np.testing.assert_allclose([b[2:] for b in first], [b[2:] for b in second], atol=1e-3)


def test_coco_category_ids_with_gaps_map_to_contiguous_labels(tmp_path):
    _image(tmp_path / "images/a.png", 32, 32)
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 32, "height": 32}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 1},
        ],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances.json").write_text(json.dumps(data))
    annotations = read_coco(tmp_path / "annotations/instances.json")
    assert annotations.categories == ["person", "airplane", "toothbrush"]
    assert annotations.category_ids == [1, 5, 90]
    assert [annotations.label_of_category_id(i) for i in (1, 5, 90)] == [0, 1, 2]
    objects = annotations.images[0].objects
    assert [(o.category, o.iscrowd, o.box) for o in objects] == [
        ("toothbrush", False, (1, 2, 11, 12)),
        ("airplane", True, (5, 5, 10, 10)),
    ]
    assert annotations.images[0].image_id == 7


def test_coco_polygons_and_rle_give_the_class_map(tmp_path):
    from pycocotools import mask as mask_utils

    _image(tmp_path / "a.png", 20, 10)
    square = np.zeros((10, 20), dtype=np.uint8)
    square[2:6, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode()
    record = ImageRecord(
        "a.png",
        20,
        10,
        [
            ObjectAnnotation((12, 1, 18, 8), "b", segmentation=[[12, 1, 18, 1, 18, 8, 12, 8]]),
            ObjectAnnotation((3, 2, 9, 6), "a", segmentation=rle),
            ObjectAnnotation((0, 8, 4, 10), "a", iscrowd=True, segmentation=[[0, 8, 4, 8, 4, 10, 0, 10]]),
        ],
    )
    annotations = AnnotationSet([record], ["a", "b"], image_dir=tmp_path)
    class_map = coco_class_map(record, annotations)
    assert (class_map[2:6, 3:9] == 1).all()
    assert (class_map[1:8, 12:18] == 2).all()
    assert (class_map[8:10, 0:4] == 255).all()
    assert (class_map == 0).sum() == 200 - 24 - 42 - 8


def test_yolo_reads_ultralytics_layout_and_names_from_data_yaml(tmp_path):
    _image(tmp_path / "images/train/a.jpg", 100, 50)
    (tmp_path / "labels/train").mkdir(parents=True)
    (tmp_path / "labels/train/a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n")
    (tmp_path / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    annotations = convert(tmp_path, "yolo", tmp_path / "coco", "coco", image_set="train")
    assert annotations.objects == 1
    back = read_coco(tmp_path / "coco/annotations/instances_train.json")
    assert back.categories == ["cat", "dog"]
    np.testing.assert_allclose(back.images[0].objects[0].box, (40, 15, 60, 35), atol=1e-3)


# ------------------------------------------------------------------------------------------ bad input


def _voc_root(tmp_path: Path, xml: str, size: tuple[int, int] = (64, 48)) -> Path:
    root = tmp_path / "voc"
    _image(root / "JPEGImages/x.jpg", *size)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations/x.xml").write_text(xml)
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "ImageSets/Main/train.txt").write_text("x\n")
    return root


def _voc_xml(objects: str, width: int = 64, height: int = 48) -> str:
    return (
        f"<annotation><filename>x.jpg</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objects}</annotation>"
    )


def _voc_object(name: str, box: tuple, difficult: str = "0") -> str:
    corners = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{corners}</bndbox></object>"


def test_malformed_xml_names_the_file_and_position(tmp_path):
    root = _voc_root(tmp_path, "<annotation><filename>x.jpg</filename>\n<size></annotation>")
    with pytest.raises(DataError, match=r"x\.xml: malformed XML \(mismatched tag: line 2"):
        read_voc(root, "train")


def test_voc_missing_field_names_the_object(tmp_path):
    root = _voc_root(tmp_path, _voc_xml("<object><name>dog</name></object>"))
    with pytest.raises(DataError, match=r"x\.xml: object 0 \('dog'\) has no <bndbox>"):
        read_voc(root, "train")


@pytest.mark.parametrize("flag", ["yes", "No", "TRUE", "false", "1", "0"])
def test_voc_difficult_reads_yes_no_true_false_and_0_1_in_any_case(tmp_path, flag):
    root = _voc_root(tmp_path, _voc_xml(_voc_object("dog", (1, 1, 5, 5), difficult=flag)))
    assert read_voc(root, "train").images[0].objects[0].difficult is (flag.lower() in ("yes", "true", "1"))


def test_voc_difficult_other_than_a_flag_names_the_file_and_the_value(tmp_path):
    root = _voc_root(tmp_path, _voc_xml(_voc_object("dog", (1, 1, 5, 5), difficult="maybe")))
    with pytest.raises(DataError) as caught:
        read_voc(root, "train")
    assert str(caught.value) == (
        f"{root / 'Annotations/x.xml'}: object 0 ('dog') <difficult> is 'maybe'; a flag is 0 / 1, no / yes or "
        "false / true"
    )


def test_malformed_json_names_the_file_and_line(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"bad\.json: malformed JSON at line 2"):
        read_coco(tmp_path / "bad.json", tmp_path)


def test_coco_annotation_with_unknown_category_is_named(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
        "annotations": [{"id": 17, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"a\.json: annotations\[0\] \(id 17\) has category_id 3"):
        read_coco(tmp_path / "a.json", tmp_path)


def test_box_outside_the_image_is_clipped_with_a_warning(tmp_path):
    root = _voc_root(tmp_path, _voc_xml(_voc_object("dog", (10, 5, 80, 40))))
    with pytest.warns(DataWarning, match=r"x\.xml: object 0 \('dog'\): box .* outside the 64×48 image; clipped"):
        annotations = read_voc(root, "train")
    assert annotations.images[0].objects[0].box == (9, 4, 64, 40)


def test_box_touching_the_border_is_silently_kept(tmp_path):
    root = _voc_root(tmp_path, _voc_xml(_voc_object("dog", (1, 1, 64, 48))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        annotations = read_voc(root, "train")
    assert annotations.images[0].objects[0].box == (0, 0, 64, 48)


def test_degenerate_box_is_dropped_with_a_warning(tmp_path):
    root = _voc_root(tmp_path, _voc_xml(_voc_object("dog", (10, 5, 9, 40)) + _voc_object("cat", (1, 1, 5, 5))))
    with pytest.warns(DataWarning, match=r"x\.xml: object 0 \('dog'\): degenerate box .*; dropped"):
        annotations = read_voc(root, "train")
    assert [o.category for o in annotations.images[0].objects] == ["cat"]


def test_conversion_report_counts_what_was_dropped(tmp_path):
    _image(tmp_path / "images/a.png", 100, 100)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.005 0.3\n")
    report = convert(tmp_path, "yolo", tmp_path / "out", "coco", class_names=["a"])
    assert report.objects == 1 and report.skipped["degenerate box"] == 1
    assert "labels/a.txt:2" in report.summary()


def test_unknown_class_name_is_named_with_its_file(tmp_path):
    root = _voc_root(tmp_path, _voc_xml(_voc_object("dgo", (1, 1, 5, 5))))
    with pytest.raises(DataError, match=r"x\.xml: object 0 has the unknown class name 'dgo' \(did you mean dog"):
        read_voc(root, "train", class_names=["cat", "dog"])


def test_yolo_bad_lines_name_file_and_line(tmp_path):
    _image(tmp_path / "images/a.png", 10, 10)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    with pytest.raises(DataError, match=r"a\.txt:2: expected 'class cx cy w h' \(5 values\), got 4"):
        read_yolo(tmp_path / "images", tmp_path / "labels", ["a"])
    (tmp_path / "labels/a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"a\.txt:1: class 3 is outside 0\.\.1"):
        read_yolo(tmp_path / "images", tmp_path / "labels", ["a", "b"])


def test_missing_image_file_is_named_with_its_annotation(tmp_path):
    with pytest.raises(DataError, match=r"gone\.jpg: image file not found \(referenced by ann\.xml\)"):
        load_rgb(tmp_path / "gone.jpg", referenced_by="ann.xml")


def test_corrupt_image_is_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"bad\.jpg: cannot read the image .* corrupt or not an image"):
        load_rgb(tmp_path / "bad.jpg")


def test_truncated_image_is_named(tmp_path):
    _image(tmp_path / "full.jpg", 64, 64)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: cannot read the image"):
        load_rgb(tmp_path / "cut.jpg")


def test_annotation_size_different_from_the_image_is_an_error(tmp_path):
    _image(tmp_path / "a.png", 64, 48)
    with pytest.raises(DataError, match=r"a\.png: the annotation \(referenced by x\.xml\) gives the size 100×80"):
        load_rgb(tmp_path / "a.png", expected_size=(100, 80), referenced_by="x.xml")
    with pytest.raises(DataError, match="EXIF"):
        load_rgb(tmp_path / "a.png", expected_size=(48, 64))


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("L", np.full((4, 5), 200, np.uint8), 200),
        ("RGBA", np.full((4, 5, 4), 90, np.uint8), 90),
        ("I;16", np.full((4, 5), 65535, np.uint16), 255),
        ("I;16", np.full((4, 5), 257 * 10, np.uint16), 10),
    ],
)
def test_grayscale_rgba_and_16_bit_images_become_8_bit_rgb(tmp_path, mode, values, expected):
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == mode
    pixels = load_rgb(tmp_path / "a.png", expected_size=(5, 4))
    assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8
    assert (pixels == expected).all()


def test_missing_roots_say_the_expected_layout(tmp_path):
    with pytest.raises(DataError, match="not a Pascal VOC folder .*Annotations/<id>.xml.*nothing is downloaded"):
        read_voc(tmp_path / "nowhere")
    with pytest.raises(DataError, match="image folder not found .*labels/<name>.txt"):
        read_yolo(tmp_path / "nowhere/images", tmp_path / "nowhere/labels", ["a"])
    with pytest.raises(DataError, match="annotation file not found"):
        read_coco(tmp_path / "nowhere.json", tmp_path)


def test_unknown_image_set_lists_the_sets_there(tmp_path):
    root = _voc_root(tmp_path, _voc_xml(""))
    with pytest.raises(DataError, match=r"image set 'val' not found; the sets here are: train"):
        read_voc(root, "val")


def test_listing_the_formats_imports_no_torch():
    """``vr convert --help`` lists the table: in a fresh process, importing it and reading its rows imports neither
    torch nor Lightning nor albumentations."""
    code = (
        "import sys\n"
        "from vision_research.data.formats import FORMATS\n"
        "rows = [f'{name}: {row.layout}' for name, row in FORMATS.items()]\n"
        "print(len(rows), *sorted({'torch', 'torchvision', 'lightning', 'albumentations'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(FORMATS))]


def test_each_row_says_its_layout_in_one_line_and_unknown_names_suggest_one():
    assert {"voc", "coco", "yolo"} <= set(FORMATS)
    for row in FORMATS.values():
        assert row.layout and "\n" not in row.layout and len(row.layout) < 100
    assert check_format("yolo") is FORMATS["yolo"]
    with pytest.raises(ConfigError, match="unknown annotation format 'cooc'; use one of .*did you mean coco"):
        read_annotations("anywhere", "cooc")


def test_a_new_format_is_one_row_naming_its_module(tmp_path, monkeypatch):
    """convert, read_annotations and detect_format need nothing but the row (here VOC's module, a second time)."""
    monkeypatch.setitem(FORMATS, "voc_again", AnnotationFormat("vision_research.data.formats.voc", "as voc"))
    original = make_set(tmp_path)
    write_voc(original, tmp_path / "voc")
    report = convert(tmp_path / "voc", "voc", tmp_path / "again", "voc_again")
    assert (report.images, report.objects) == (3, 3)
    assert boxes_of(read_annotations(tmp_path / "again", "voc_again")) == boxes_of(original)
    monkeypatch.delitem(FORMATS, "voc")
    assert detect_format(tmp_path / "again") == ("voc_again", tmp_path / "again")


def test_detect_format_takes_the_first_row_that_finds_a_data_set(tmp_path):
    """Ultralytics' copy of COCO holds labels/ and annotations/instances_val2017.json: a YOLO root."""
    root = tmp_path / "coco"
    (root / "labels").mkdir(parents=True)
    (root / "annotations").mkdir()
    json_path = root / "annotations/instances_val2017.json"
    json_path.write_text("{}")
    assert detect_format(root) == ("yolo", root)
    assert detect_format(json_path) == ("coco", json_path)
    (root / "labels").rmdir()
    assert detect_format(root) == ("coco", json_path)
    (root / "annotations/instances_train2017.json").write_text("{}")
    with pytest.raises(ConfigError, match="several COCO files"):
        detect_format(root)
    with pytest.raises(DataError, match="not a dataset folder of a known format .*voc: Annotations/"):
        detect_format(tmp_path)
