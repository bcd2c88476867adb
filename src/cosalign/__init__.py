"""cosalign: Controllable Safety Alignment (CoSA) as a reproducible data-and-model registry."""

__version__ = "0.2.0"
