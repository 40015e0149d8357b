"""The package version, recorded in every adapter it creates."""

__version__ = "0.5.0"
