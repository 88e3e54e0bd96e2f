"""The project installs from a wheel: the configs ship inside the package, and ``vr train`` runs from any folder.

The wheel is built from this source tree and installed into a fresh virtual environment that sees this machine's
packages (torch and the other dependencies) but not the source tree; ``vr`` then runs in an empty folder.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str | Path], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1")
    command = [str(c) for c in command]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_vr_train_runs_from_an_installed_wheel_in_any_folder(tmp_path):
    # Built from a copy of what the wheel is made of, so that setuptools' build/ folder stays out of the source tree.
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    shutil.copytree(ROOT / "vision_research", source / "vision_research", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # The build backend from this environment when it has one (no download), else pip fetches it into isolation.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", *isolation, "-w", wheels], cwd=tmp_path)
    (wheel,) = wheels.glob("vision_research-*.whl")
    packaged = [n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("vision_research/configs/")]
    assert "vision_research/configs/train.yaml" in packaged
    assert len(packaged) == len(list((ROOT / "vision_research" / "configs").rglob("*.yaml")))

    environment = tmp_path / "env"
    venv.create(environment, system_site_packages=True, with_pip=True)
    python, vr = environment / "bin" / "python", environment / "bin" / "vr"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    imported = run([python, "-c", "import vision_research; print(vision_research.__file__)"], cwd=elsewhere)
    assert Path(imported.stdout.strip()).is_relative_to(environment), imported.stdout

    run([vr, "train", "debug=fast", "callbacks.progress_bar=none"], cwd=elsewhere)
    (metrics,) = elsewhere.glob("runs/*/*_classification_lenet5_modern_mnist/metrics.json")
    assert '"test/acc1"' in metrics.read_text()

    # A user's own config folder joins the packaged groups.
    mine = elsewhere / "my_configs" / "experiment"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: resnet20\nseed: 7\n")
    composed = run([vr, "train", "--config-dir", "my_configs", "experiment=mine", "--cfg", "job"], cwd=elsewhere)
    assert re.search(r"^seed: 7$", composed.stdout, re.M) and re.search(r"^  name: resnet20$", composed.stdout, re.M)
