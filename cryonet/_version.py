"""The package version (its own module, so that sub-modules need not import ``cryonet``)."""

__version__ = "0.1.0"
