"""Annotation formats — Pascal VOC XML, COCO instances JSON, YOLO txt, segmentation masks — one module each, with
their readers (validating, with errors naming the file, line or object) and writers, and the conversion between them.

Every reader returns an :class:`~vision_research.data.annotations.AnnotationSet` and every writer takes one, so any
pair converts through it (``convert``; the ``vr convert`` command). Malformed files raise ``DataError`` naming the
file (and line or object); repairable boxes are clipped or dropped with a ``DataWarning`` by the rule in
``annotations.sanitize_box``. The datamodules that read these formats live beside this package
(``coco_datamodule.py``, ``voc_datamodule.py``, ``yolo_datamodule.py``).
"""

from .coco import (
    check_unique_coco_ids,
    coco_class_map,
    coco_dict,
    coco_index,
    default_coco_image_dir,
    load_json,
    read_coco,
    write_coco,
)
from .convert import FORMATS, check_format, convert, read_annotations
from .masks import load_mask, save_mask_png, voc_palette
from .voc import (
    DISCOVER,
    VOC_CLASSES,
    VOC_LAYOUT,
    check_class_names,
    check_voc_root,
    read_voc,
    read_voc_xml,
    voc_class_names,
    voc_ids,
    voc_xml,
    write_voc,
)
from .writing import ConversionReport, place_image
from .yolo import YOLO_LAYOUT, read_yolo, write_yolo, yolo_class_names, yolo_data_yaml, yolo_lines
