"""efm-seg: semantic segmentation of aerial imagery with Error Fingerprint Map guided training."""

__version__ = "0.1.0"

from efm_seg.framework.warnings import install as _install_warning_filters

_install_warning_filters()
