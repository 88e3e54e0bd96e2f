"""Wall time of one sweep run one job at a time (Hydra's basic launcher) and n_jobs at a time (joblib:
``hydra/launcher=local_parallel``, each job on its share of the cores through ``threads: null``).

Both sides run the same ``vr train -m`` command line, with the same overrides; each wall time is the whole
command: its start, every job, and for joblib the start of its worker processes (each imports torch and
Lightning once, then runs its jobs one after the other). With several rounds the sides alternate, and the table
gives the medians.

    python benchmarks/sweep_parallel.py            # model=lenet5,lenet5_modern seed=0,1,2, 3 epochs each: 6 runs
    python benchmarks/sweep_parallel.py --epochs 10 --rounds 3 --grid model=lenet5,lenet5_modern seed=0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vision_research.sweeps import available_cores


def run_sweep(overrides: list[str], runs_dir: Path) -> tuple[float, list[dict]]:
    """Seconds taken by ``vr train -m OVERRIDES`` into ``runs_dir``, and the summaries of its runs."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "vision_research.cli", "train", "-m", *overrides, f"paths.runs_dir={runs_dir}"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vr train -m failed:\n{done.stderr[-3000:]}")
    summaries = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("sweeps/*/*/metrics.json"))]
    return seconds, summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grid", nargs="+", default=["model=lenet5,lenet5_modern", "seed=0,1,2"], help="the sweep's overrides"
    )
    parser.add_argument("--epochs", type=int, default=3, help="trainer.max_epochs of every run (default: 3)")
    parser.add_argument("--n-jobs", type=int, default=2, help="jobs at once with joblib (default: 2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side, alternating (default: 1)")
    parser.add_argument("--override", nargs="*", default=[], help="more overrides for every run")
    args = parser.parse_args()

    common = [*args.grid, f"trainer.max_epochs={args.epochs}", "callbacks.progress_bar=none", *args.override]
    sides = {
        "basic (one job at a time)": common,
        f"joblib, hydra/launcher=local_parallel n_jobs={args.n_jobs}": [
            *common,
            "hydra/launcher=local_parallel",
            f"hydra.launcher.n_jobs={args.n_jobs}",
        ],
    }
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    threads: dict[str, set[int]] = {name: set() for name in sides}
    jobs = 0
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
            for name in order:
                runs_dir = Path(folder) / f"round{round_index}_side{list(sides).index(name)}"
                wall, summaries = run_sweep(sides[name], runs_dir)
                print(f"round {round_index + 1}, {name}: {wall:.1f} s", file=sys.stderr)
                seconds[name].append(wall)
                threads[name].update(s["threads"] for s in summaries)
                jobs = len(summaries)

    print(
        f"`vr train -m {' '.join(common)}`: {jobs} runs; {available_cores()} cores; "
        f"median of {args.rounds} round(s); wall time of the whole command\n"
    )
    print("| launcher | torch threads per job | wall s | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    baseline = statistics.median(seconds[next(iter(sides))])
    for name in sides:
        median = statistics.median(seconds[name])
        shown = ", ".join(str(t) for t in sorted(threads[name]))
        print(f"| {name} | {shown} | {median:.1f} | {baseline / median:.2f}× |")


if __name__ == "__main__":
    main()
