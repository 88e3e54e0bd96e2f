"""``python vision_research/launch/train.py OVERRIDES``: ``vr train`` as a plain script.

Lightning starts ranks 1…N−1 of ``vr train trainer=ddp`` by re-running ``sys.argv`` with the run's Hydra
overrides (the same run directory for every rank). The ``vr`` script needs its subcommand word first, which
Hydra would read as an override, so ``vr train`` hands the launcher this file instead.
"""

import sys

from vision_research.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
