"""Training and evaluation data: aligned thick/thin pairs, random crops, held-out cases."""

from thinct.data.cases import Case, simulated_case
from thinct.data.pairs import Pair, normalise, simulated_pair, slice_range

__all__ = ["Case", "Pair", "normalise", "simulated_case", "simulated_pair", "slice_range"]
