"""Serving students outside fairseq."""
