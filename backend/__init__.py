"""M3 prospectivity service: site store, inference and web map (never imports torch)."""

__version__ = "0.1.0"
