"""Token-level hidden states of a fairseq encoder-decoder, through the (possibly DDP-wrapped) model.

The encoder's per-layer states never reach the model's return value, so a forward hook on the
encoder catches them while the call still goes through the wrapper (keeping DDP's gradient sync)."""
from contextlib import contextmanager


def unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


@contextmanager
def encoder_output_of(model):
    caught = {}
    handle = unwrap(model).encoder.register_forward_hook(lambda m, args, out: caught.update(out=out))
    try:
        yield caught
    finally:
        handle.remove()


def layer_states(net_output, encoder_out):
    """(encoder layer outputs, decoder layer outputs), each a list of T x B x C, embeddings excluded."""
    return encoder_out["encoder_states"][1:], net_output[1]["inner_states"][1:]
