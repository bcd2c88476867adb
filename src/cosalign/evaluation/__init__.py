"""Evaluation: benchmarks as versioned data, the evaluate entry point (stage and `cosalign eval`), and
the report."""
