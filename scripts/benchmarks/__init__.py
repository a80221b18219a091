"""Performance benchmarks of issue 8 (``./scripts/bench``): each row measures a figure and the
reference it is divided by in the same run, so the noise of the machine cancels out."""
