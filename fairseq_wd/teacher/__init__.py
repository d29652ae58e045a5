"""The teacher: its checkpoint and dictionaries (checkpoint.py), its last checkpoints averaged
(average.py) and its output for the training set, the sequence-level KD data (output.py)."""
