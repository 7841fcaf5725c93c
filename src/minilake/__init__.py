"""minilake: landing zone -> archive -> validated SCD2 Delta tables, and reports on them."""

from minilake.generate import generate

__all__ = ["generate"]
