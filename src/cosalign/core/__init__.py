"""Shared machinery of every stage: atomic I/O, the path map, params, seeded RNGs, the stage runner
and the resumable work queue."""
