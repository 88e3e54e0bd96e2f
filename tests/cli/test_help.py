"""`vr --help` and `vr <command> --help`: built from each command's own parser or config file, answered at once
(nothing heavy imported), and the old spellings of renamed flags still accepted, with a note."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from vision_research.cli import COMMANDS, main

HEAVY = ("torch", "lightning", "albumentations", "torchvision", "timm")
# One fresh interpreter per command: the help is printed, then what it imported is checked.
PROBE = """
import contextlib, sys
from vision_research.cli import main
with contextlib.suppress(SystemExit):  # argparse's --help exits
    main([sys.argv[1], "--help"])
print("heavy:", ",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def help_in_fresh_process(command: str) -> tuple[float, subprocess.CompletedProcess]:
    """``vr COMMAND --help`` in a new interpreter: (the CPU seconds it took, the finished process). CPU time, not wall
    time: on an idle machine they agree, and the machine's other work does not count in it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), command], capture_output=True, text=True, timeout=60
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_help_answers_within_half_a_second_without_torch(command):
    seconds, result = min((help_in_fresh_process(command) for _ in range(3)), key=lambda timed: timed[0])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: vr {command}")
    assert result.stdout.rstrip().endswith("heavy:"), result.stdout[-300:]  # none of HEAVY was imported
    assert seconds < 0.5, f"vr {command} --help took {seconds:.2f} s"


def test_the_overview_lists_each_command_with_its_own_first_sentence(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        summary = command.summary()
        assert summary and f"  {name}" in out and summary in out
        assert summary.removesuffix(".") in " ".join(command.usage().split())  # the command's own help says it


def test_the_hydra_commands_help_lists_their_config_keys(capsys):
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vr export ckpt_path=... format=... [KEY=VALUE ...]")
    for key in ("dtype=fp32", "dynamic_batch=false", "opset=null", "tolerance=null"):
        assert f"  {key} " in out


@pytest.mark.parametrize(("old", "new"), [("--out", "--output"), ("--ckpt", "--ckpt-path")])
def test_an_old_flag_spelling_still_works_with_a_note(old, new, photo, tmp_path, capsys):
    target = str(tmp_path / "cam.png") if old == "--out" else str(tmp_path / "missing.ckpt")
    args = ["inspect", "cam", str(photo), old, target]
    args += ["--model", "lenet5_modern"] if old == "--out" else []
    code = main(args)
    captured = capsys.readouterr()
    assert f"vr inspect cam: note: {old} is now spelled {new}" in captured.err
    if old == "--out":
        assert code == 0 and (tmp_path / "cam.png").is_file()
    else:  # the value reached --ckpt-path: the checkpoint's own error names it
        assert code == 2 and "missing.ckpt: checkpoint not found" in captured.err
