"""edgebac: compute over data for the edge."""

__version__ = "0.1.0"
