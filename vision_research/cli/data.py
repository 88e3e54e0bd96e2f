"""``vr convert`` and ``vr data``: annotation files converted between formats, and a data set's statistics."""

from __future__ import annotations

import argparse

from .command import ArgumentParser, new_parser, parser_command


def convert_parser() -> ArgumentParser:
    from ..data.formats import DISCOVER, FORMATS

    parser = new_parser(
        "convert",
        "Convert annotations from one format to another, with a summary of what was skipped or repaired.",
    )
    parser.add_argument("source_format", choices=list(FORMATS))
    parser.add_argument("destination_format", choices=list(FORMATS))
    parser.add_argument(
        "source", help="VOC root (Annotations/...), COCO instances JSON, or YOLO root (images/, labels/)"
    )
    parser.add_argument("destination", help="output folder")
    parser.add_argument("--set", default="train", help="VOC image set / YOLO sub-folder / COCO output name")
    parser.add_argument("--image-dir", default=None, help="images of a COCO file (default: found beside it)")
    parser.add_argument(
        "--class-names",
        default=None,
        help=f"comma-separated class names (YOLO without classes.txt; VOC label order), or {DISCOVER} "
        "(VOC: the sorted names found; default: the 20 VOC classes)",
    )
    return parser


def convert(options: argparse.Namespace) -> int:
    from ..data.formats import DISCOVER, convert

    names = options.class_names
    if names and names != DISCOVER:
        names = names.split(",")
    report = convert(
        options.source,
        options.source_format,
        options.destination,
        options.destination_format,
        image_set=options.set,
        image_dir=options.image_dir,
        class_names=names,
        progress=True,
    )
    print(report.summary())
    print(f"written to {options.destination}")
    return 0


def data_parser() -> ArgumentParser:
    from ..data.formats import FORMATS

    parser = new_parser(
        "data",
        "Dataset statistics: class counts, boxes per image, box and image sizes (histograms with --plot).",
    )
    parser.add_argument("action", choices=["stats"])
    parser.add_argument("root", help="COCO JSON or a folder with annotations/*.json, a VOC root, or a YOLO root")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    parser.add_argument("--set", default=None, help="VOC image set or YOLO sub-folder (default: everything)")
    parser.add_argument("--plot", default=None, metavar="FILE", help="write the histograms to this PNG")
    return parser


def data_stats(options: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..data.stats import dataset_stats, load_for_stats, plot_stats

    stats = dataset_stats(load_for_stats(options.root, options.format, options.set))
    console = Console()
    per_image = stats.boxes_per_image
    console.print(
        f"{stats.images} images, {stats.objects} objects ({stats.crowd} crowd, {stats.difficult} difficult); "
        f"boxes per image: min {per_image.min(initial=0)}, mean {per_image.mean() if per_image.size else 0:.2f}, "
        f"max {per_image.max(initial=0)}; images without objects: {int((per_image == 0).sum())}"
    )
    sizes = stats.size_groups
    console.print("box sizes (COCO): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    shown = ", ".join(f"{w}×{h} ({n})" for (w, h), n in stats.image_sizes.most_common(5))
    console.print(f"image sizes: {len(stats.image_sizes)} distinct; most common: {shown}")
    table = Table(title="objects per class")
    table.add_column("class")
    table.add_column("objects", justify="right")
    for name, count in sorted(stats.class_counts.items(), key=lambda item: -item[1]):
        table.add_row(name, str(count))
    console.print(table)
    if options.plot:
        console.print(f"histograms: {plot_stats(stats, options.plot)}")
    return 0


CONVERT = parser_command("convert", convert_parser, convert)
DATA = parser_command("data", data_parser, data_stats)
