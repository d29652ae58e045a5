"""Datasets the plugin adds to fairseq's: teacher top-K log-probabilities stored beside a split."""
