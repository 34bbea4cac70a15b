"""Decoding NetFlow v5/v9 and IPFIX packets into flow records."""
