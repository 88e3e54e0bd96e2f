"""``python -m vision_research.cli``: the ``vr`` command."""

from . import main

raise SystemExit(main())
