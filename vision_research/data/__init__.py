"""Datamodules (registered by name), annotation formats and transforms.

Classification: ``mnist`` (MNIST, Fashion-MNIST), ``digits`` (scikit-learn's), ``image_folder`` (your photos), in
``mnist.py``, ``digits.py``, ``folder.py``. Detection and segmentation: ``shapes`` (embedded, generated), ``coco``,
``voc``, ``yolo``, in the module of that name, over ``annotated.py``. The annotation files themselves: ``formats/``.

The names below are imported from their module on first use, so that importing the package (``vr data --help``)
imports no torch; the datamodules register before the first lookup by name (``registry.py``).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "annotations": ("AnnotationSet", "DataWarning", "ImageRecord", "ObjectAnnotation"),
        "coco": ("CocoDataModule",),
        "digits": ("DigitsDataModule",),
        "folder": ("ImageFolderDataModule",),
        "formats": ("convert", "read_coco", "read_voc", "read_yolo", "write_coco", "write_voc", "write_yolo"),
        "mnist": ("MNISTDataModule", "read_idx"),
        "registry": ("create_datamodule", "list_datamodules", "register_datamodule"),
        "shapes": ("ShapesDataModule", "generate_shapes"),
        "transforms": ("build_classification_transforms", "build_transforms"),
        "voc": ("VOCDataModule",),
        "yolo": ("YoloDataModule",),
    },
)
