"""Scripts that Lightning's DDP launcher re-runs for the other ranks (see :mod:`vision_research.launch.train`)."""
