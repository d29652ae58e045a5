"""fairseq's beam search over a shortlist: each batch decodes in the vocabulary of its candidates only.

fairseq 0.12 has no vocabulary selection, and `prefix_allowed_tokens_fn` masks after the full projection,
saving nothing; scattering candidate scores into a -inf full-vocabulary row still leaves the generator's
per-step work over the whole vocabulary (NaN check, adding scores, top-k). So here a batch runs in
*candidate space*: its candidate ids C (sorted; shortlist.py, the union over its sentences as CTranslate2
forms it) are its vocabulary. The generator's model wrapper (fairseq's EnsembleModel, subclassed) maps
the hypotheses' candidate indices to token ids before the decoder, whose `output_layer` projects onto the
rows C of the output matrix; fairseq's own forward_decoder log-softmaxes over them (temperature,
attention, ensembles as usual) and fairseq's own beam search then works on |C| columns. C holds every
id below the dictionary's nspecial, so <s>, <pad>, </s>, <unk> keep their ids and the generator's EOS,
pad, unk-penalty and min/max-length handling hold unchanged; the hypotheses are mapped back to token ids.
The candidate set is per batch, so reordering beams or dropping finished sentences never changes it.

Probabilities are renormalised over the candidates (as in CTranslate2 and Marian), so scores differ
from plain decoding; with every target a candidate, decoding is plain decoding.
"""
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from fairseq import search
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator


def projection_weight(model):
    """The decoder's output matrix (V x d), or a ValueError saying why this model cannot use a shortlist."""
    decoder = getattr(model, "decoder", None)
    projection = getattr(decoder, "output_projection", None)
    if getattr(decoder, "adaptive_softmax", None) is not None or not isinstance(projection, torch.nn.Linear) \
            or projection.bias is not None:
        raise ValueError(f"--shortlist needs a decoder whose output layer is one bias-free nn.Linear "
                         f"(output_projection); {type(decoder).__name__} has none (adaptive softmax?)")
    return projection.weight


def project(features, weight):
    """features (..., d) @ weight.T as one 2-D GEMM: torch's 3-D linear over a weight that is no Parameter
    takes a batched path, 5x slower on a CPU for fairseq's non-contiguous (B, 1, d) features."""
    return F.linear(features.reshape(-1, features.size(-1)), weight).view(*features.shape[:-1], weight.size(0))


@contextmanager
def projecting_onto(models, rows):
    """Each model's decoder.output_layer = features @ rows.T for the duration (an instance attribute
    shadowing the method; removed after, so training or plain decoding never sees it)."""
    for model, weight in zip(models, rows):
        model.decoder.output_layer = lambda features, weight=weight: project(features, weight)
    try:
        yield
    finally:
        for model in models:
            del model.decoder.output_layer


class ShortlistEnsembleModel(EnsembleModel):
    """fairseq's EnsembleModel in one batch's candidate space: `use(candidates)` before decoding it."""

    def __init__(self, models, vocab_size):
        super().__init__(models)
        for m in models:
            if projection_weight(m).size(0) != vocab_size:
                raise ValueError(f"--shortlist: the model's output layer has {projection_weight(m).size(0)} rows, "
                                 f"the target dictionary {vocab_size} entries")
        self.candidates = None
        self.rows = None

    def use(self, candidates):
        self.candidates = candidates
        self.rows = [projection_weight(m).index_select(0, candidates) for m in self.models]  # once per batch

    def forward_decoder(self, tokens, encoder_outs, incremental_states, temperature: float = 1.0):
        with projecting_onto(self.models, self.rows):
            lprobs, attn = super().forward_decoder(self.candidates[tokens], encoder_outs, incremental_states,
                                                   temperature)
        if lprobs.size(-1) != self.candidates.numel():
            raise ValueError(f"--shortlist: {type(self.single_model.decoder).__name__} does not project through "
                             "decoder.output_layer")
        return lprobs, attn


class ShortlistSequenceGenerator(SequenceGenerator):
    """fairseq's SequenceGenerator decoding each batch over its candidates of `shortlist` (shortlist.Shortlist)."""

    def __init__(self, models, tgt_dict, shortlist=None, **kwargs):
        super().__init__(ShortlistEnsembleModel(models, len(tgt_dict)), tgt_dict, **kwargs)
        self.shortlist = shortlist
        unsupported = [name for name, used in (
            ("a language model (--lm-path)", self.lm_model is not None),
            ("--tokens-to-suppress", self.token_indices_to_suppress is not None),
            (f"search {type(self.search).__name__} (beam search and --sampling only)",
             type(self.search) not in (search.BeamSearch, search.Sampling))) if used]
        if unsupported:
            raise ValueError(f"--shortlist does not work with {', '.join(unsupported)}")
        if max(tgt_dict.bos(), tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()) >= tgt_dict.nspecial:
            raise ValueError("--shortlist needs <s>, <pad>, </s>, <unk> among the dictionary's first nspecial ids")

    def _generate(self, sample, prefix_tokens=None, constraints=None, bos_token=None):
        if prefix_tokens is not None or constraints is not None:
            raise ValueError("--shortlist does not work with --prefix-size or --constraints")
        if bos_token is not None and bos_token >= self.tgt_dict.nspecial:
            raise ValueError("--shortlist: the first decoder input must be a special symbol")
        src_tokens = sample["net_input"]["src_tokens"]
        # beam search takes the top 2 x beam of a beam's |C| columns at the first step
        candidates = self.shortlist.candidates(src_tokens, minimum=2 * self.beam_size + 1).to(src_tokens.device)
        self.model.use(candidates)
        self.vocab_size = candidates.numel()
        try:
            finalized = super()._generate(sample, prefix_tokens, constraints, bos_token)
        finally:
            self.vocab_size = len(self.tgt_dict)
        for hypos in finalized:
            for hypo in hypos:
                hypo["tokens"] = candidates[hypo["tokens"]]
        return finalized
