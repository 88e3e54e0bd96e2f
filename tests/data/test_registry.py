"""The datamodule registry: names and options checked with hints, the built-in datamodules registered before the
first lookup, a user's own module registering beside them."""

import subprocess
import sys

import pytest

from vision_research.data import create_datamodule
from vision_research.errors import ConfigError


def test_unknown_datamodule_and_option_suggest():
    with pytest.raises(ConfigError, match="unknown datamodule 'mnsit'. Did you mean: mnist"):
        create_datamodule("mnsit")
    with pytest.raises(ConfigError, match="no option 'batchsize' \\(did you mean batch_size"):
        create_datamodule("mnist", batchsize=8)


def test_built_in_datamodules_register_before_the_first_lookup_beside_a_users_own(tmp_path):
    """In a fresh process: importing the package registers nothing yet; a user's module (``imports=[...]`` in a
    config) registers its datamodule, and the first lookup finds it beside every built-in one."""
    (tmp_path / "my_data.py").write_text(
        "from vision_research.data import register_datamodule\n"
        "from vision_research.data.digits import DigitsDataModule\n\n\n"
        "@register_datamodule(name='my_digits')\n"
        "class MyDigits(DigitsDataModule):\n"
        "    pass\n"
    )
    code = (
        "import my_data\n"
        "from vision_research.data import create_datamodule, list_datamodules\n"
        "print(' '.join(list_datamodules()), type(create_datamodule('my_digits', image_size=8)).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    built_in = ["coco", "digits", "image_folder", "mnist", "shapes", "voc", "yolo"]
    assert result.stdout.split() == [*sorted([*built_in, "my_digits"]), "MyDigits"]
