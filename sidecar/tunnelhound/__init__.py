"""Tunnelhound: a NetFlow/IPFIX security sidecar for Zeek and Elastic SIEM."""

__version__ = "0.1.0"

__all__ = ["__version__"]
