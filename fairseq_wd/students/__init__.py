"""Students made from a teacher before training: layer copies and sized dictionaries (layer_copy.py).
The students' architectures are in models/, their losses in criterions/."""
