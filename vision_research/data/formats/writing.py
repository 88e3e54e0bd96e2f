"""What the format writers share: the report of what a conversion wrote, skipped or repaired, placing images
(hard links where the file system allows), and progress."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ConversionReport:
    """What a conversion wrote and what it skipped or repaired, and why."""

    images: int = 0
    objects: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def note(self, counter: Counter, reason: str, example: str) -> None:
        counter[reason] += 1
        self.examples.setdefault(reason, example)

    def summary(self) -> str:
        lines = [f"converted {self.images} images, {self.objects} objects"]
        for title, counter in (("skipped", self.skipped), ("repaired", self.repaired)):
            for reason, count in counter.most_common():
                lines.append(f"  {title} {count}: {reason} (e.g. {self.examples[reason]})")
        return "\n".join(lines)


def place_image(source: Path, destination: Path) -> None:
    """Hard-link ``source`` at ``destination`` (a copy across file systems); existing files are kept."""
    if destination.exists():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def progress_over(items: Sequence, description: str, show: bool) -> Iterable:
    if not show:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
