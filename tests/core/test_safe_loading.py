"""Safe loading: a checkpoint whose pickle would run code when unpickled is refused by every entry point.

The planted file holds an object whose unpickling touches a marker file. ``vr predict``, ``vr eval``,
``load_pretrained`` and ``vr train model.pretrained=`` each refuse it with one ``DataError`` line naming the file and
the refused type, and the test after ``vr train`` refuses it too; the marker never appears, also when
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` asks torch for unsafe loads. A truncated file is one line naming it as well.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import vision_research.train as train_module
from tests.core.test_training_faults import fast_config
from vision_research.errors import DataError
from vision_research.evaluate import evaluate
from vision_research.models import create_model, load_pretrained
from vision_research.predict import predict
from vision_research.train import train

REFUSED = "contains a pickled object of type .* that is not allowed; only load checkpoints you trust"


class TouchOnUnpickle:
    """Unpickled, this touches ``marker``: what a malicious checkpoint could do with any other function."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., None], tuple[Path]]:
        return Path.touch, (self.marker,)


def plant(path: Path, marker: Path) -> Path:
    """A Lightning-shaped checkpoint of LeNet-5 weights at ``path``, with the marker-touching object inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {f"model.{k}": v for k, v in create_model("lenet5").state_dict().items()}
    torch.save({"state_dict": weights, "hyper_parameters": {"payload": TouchOnUnpickle(marker)}}, path)
    return path


@pytest.fixture(params=[None, "1"], ids=["default", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"])
def planted(request, tmp_path, monkeypatch) -> Path:
    """``<tmp>/run/checkpoints/last.ckpt`` in a classification run directory, loaded with or without the variable."""
    if request.param:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", request.param)
    checkpoint = plant(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "marker")
    config = {"seed": 0, "task": {"name": "classification"}, "data": {"name": "mnist"}}
    (tmp_path / "run" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    return checkpoint


def assert_refused(err: pytest.ExceptionInfo[DataError], checkpoint: Path, reason: str = REFUSED) -> None:
    """No marker (nothing ran), and the error is one line naming ``checkpoint`` and saying ``reason``."""
    assert not (checkpoint.parents[2] / "marker").exists()
    message = str(err.value)
    assert "\n" not in message and str(checkpoint) in message and re.search(reason, message), message


def test_the_planted_payload_runs_when_unpickled_unsafely(tmp_path):
    checkpoint = plant(tmp_path / "evil.ckpt", tmp_path / "marker")
    torch.load(checkpoint, weights_only=False)
    assert (tmp_path / "marker").exists()


def test_vr_predict_refuses_it(planted, tmp_path):
    with pytest.raises(DataError) as err:
        predict(planted, tmp_path)
    assert_refused(err, planted)


def test_vr_eval_refuses_it(planted):
    with pytest.raises(DataError) as err:
        evaluate(planted)
    assert_refused(err, planted)


def test_load_pretrained_refuses_it(planted):
    with pytest.raises(DataError) as err:
        load_pretrained(create_model("lenet5"), planted)
    assert_refused(err, planted)


def test_vr_train_model_pretrained_refuses_it(planted, tmp_path):
    with pytest.raises(DataError) as err:
        train(fast_config(f"model.pretrained={planted}"), tmp_path / "train")
    assert_refused(err, planted)


def test_the_test_after_vr_train_refuses_it(planted, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "_checkpoint_to_test", lambda *_: str(planted))
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):
        train(fast_config(), tmp_path / "train")
    assert not (tmp_path / "marker").exists()


def test_a_truncated_file_is_one_line_naming_it(planted):
    good = planted.with_name("good.ckpt")
    torch.save({"state_dict": create_model("lenet5").state_dict()}, good)
    planted.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DataError) as err:
        load_pretrained(create_model("lenet5"), planted)
    assert_refused(err, planted, "truncated, corrupt or not a PyTorch file")
    with pytest.raises(DataError) as err:
        predict(planted, planted.parent)
    assert_refused(err, planted, "not a checkpoint of a classification task")
