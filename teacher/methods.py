"""The teacher's methods (no torch import, so command-line parsers can offer them cheaply)."""

#: Garbin et al.'s steps 1-4, and the two baselines behind the same interface.
METHODS = ("garbin", "image2stylegan", "projector")
