"""Faults in training: a run that diverges to NaN, a second run into a used run directory, a run directory that
cannot be made.

A non-finite training loss ends ``vr train`` with one ``error:`` line naming the step and the loss term, and no
``metrics.json`` or checkpoint of that epoch; ``divergence.max_skipped_steps`` skips that many such steps in a row
instead. A run directory holding a previous run's results is refused, so ``best.ckpt``/``last.ckpt`` never go stale.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

import vision_research.train as train_module
from tests.commands import FAST, vr
from vision_research.cli import main
from vision_research.config_tree import config_dir
from vision_research.errors import VisionResearchError
from vision_research.train import train


def fast_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=[*FAST, *overrides])


def test_vr_train_stops_at_the_first_nan_loss_with_one_error_line(tmp_path):
    run_dir = tmp_path / "runs" / "diverged"
    result = vr("train", *FAST, "task.optimizer.lr=1e6", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: training diverged at global step 1 (epoch 0): non-finite train/loss;"), error
    assert "task.optimizer.lr" in error and "trainer.gradient_clip_val" in error and "32-true" in error
    # Unfinished for vr compare, and no checkpoint holds the diverged weights.
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob("checkpoints/*.ckpt"))


class TwoTermLoss(L.LightningModule):
    """A linear model whose ``loss_box`` term is NaN at the given global steps (``loss_cls`` stays finite)."""

    def __init__(self, nan_steps: set[int]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.nan_steps = nan_steps
        self.weights_seen: list[torch.Tensor] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.weights_seen.append(self.layer.weight.detach().clone())
        (x,) = batch
        loss_cls = self.layer(x).square().mean()
        loss_box = self.layer(x).abs().mean() * (float("nan") if self.global_step in self.nan_steps else 1.0)
        self.log_dict({"train/loss_cls": loss_cls, "train/loss_box": loss_box})
        self.log("train/loss", loss_cls + loss_box)
        return loss_cls + loss_box

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=0.1)


def fit(module: TwoTermLoss, max_skipped_steps: int, steps: int = 6) -> None:
    from vision_research.callbacks import DivergenceGuard

    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DivergenceGuard(max_skipped_steps)],
    )
    trainer.fit(module, DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=4))


def test_the_error_names_the_non_finite_loss_terms_and_the_step():
    module = TwoTermLoss(nan_steps={3})
    with pytest.raises(
        VisionResearchError, match=r"at global step 3 \(epoch 0\): non-finite train/loss_box, train/los"
    ):
        fit(module, max_skipped_steps=0)
    assert all(torch.isfinite(w).all() for w in module.weights_seen)  # stopped before the NaN update


def test_a_skip_budget_leaves_the_weights_alone_at_non_finite_steps():
    module = TwoTermLoss(nan_steps={2, 4})
    with pytest.warns(UserWarning, match="skipping global step 2"):
        fit(module, max_skipped_steps=1)
    assert len(module.weights_seen) == 6 and all(torch.isfinite(w).all() for w in module.weights_seen)
    assert torch.equal(module.weights_seen[2], module.weights_seen[3])  # step 2 skipped
    assert not torch.equal(module.weights_seen[1], module.weights_seen[2])  # the others stepped
    # Two non-finite steps in a row exceed a budget of one.
    with pytest.raises(VisionResearchError, match="at global step 5 .* after 1 skipped step"):
        fit(TwoTermLoss(nan_steps={2, 4, 5}), max_skipped_steps=1, steps=8)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_a_second_run_into_a_used_run_directory_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    # What Hydra writes before the run (and a config.yaml) does not make a directory used.
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run_dir / "cli.log").write_text("")
    (run_dir / "config.yaml").write_text("seed: 0\n")
    train(fast_config(), run_dir)
    first = snapshot(run_dir)
    assert {"metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= set(first)
    with pytest.raises(VisionResearchError, match=f"run directory {run_dir} already holds a previous run .*hydra.run"):
        train(fast_config(), run_dir)
    assert snapshot(run_dir) == first  # nothing overwritten, no best-v1.ckpt beside the old ones


def test_ranks_that_join_a_ddp_run_are_not_refused(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"rank 0 of this run wrote it")

    def reached(cfg: DictConfig) -> None:
        raise RuntimeError("past the run directory check")

    monkeypatch.setattr(train_module, "build_datamodule", reached)
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # a rank Lightning's launcher re-ran (LOCAL_RANK=1)
    with pytest.raises(RuntimeError, match="past the run directory check"):
        train(fast_config(), tmp_path)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    with pytest.raises(VisionResearchError, match="checkpoints/last.ckpt"):
        train(fast_config(), tmp_path)


def test_a_run_directory_that_cannot_be_made_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(VisionResearchError, match=f"hydra.run.dir={blocker / 'run'}: cannot create this folder, "):
        train(fast_config(), blocker / "run")
    # From the command line, before Hydra would try (and fail with a traceback).
    for key in ("hydra.run.dir", "hydra.sweep.dir", "paths.runs_dir"):
        assert main(["train", "debug=fast", f"{key}={blocker}/runs"]) == 2
        message = f"error: {key}={blocker}/runs: cannot create this folder, {blocker} is a file"
        assert capsys.readouterr().err.strip() == message
    # A folder without write permission (root may write anywhere, so the permission is taken away here).
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["train", "debug=fast", f"hydra.run.dir={tmp_path}/run"]) == 2
    assert f"cannot write into {tmp_path} (permission denied)" in capsys.readouterr().err
