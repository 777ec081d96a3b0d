"""BagError: what every bagio function raises when a bag cannot be used as asked."""
from __future__ import annotations


class BagError(RuntimeError):
    """A bag cannot be used for training; the message says why and what to do."""
