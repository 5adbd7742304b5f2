"""efm-seg: semantic segmentation of aerial imagery with Error Fingerprint Map guided training."""

__version__ = "0.1.0"
