"""Lexical shortlists: the vmap.txt file, its candidates per batch, building it from aligned data and its
coverage (vmap.py), and fairseq's sequence generator decoding over the candidates (generator.py)."""
