"""Data the plugin reads beside fairseq's: a data-bin's pairs, dictionaries, splits and fairseq-generate's
batches (data_bin.py), and teacher top-K log-probabilities stored beside a split (teacher_topk.py)."""
