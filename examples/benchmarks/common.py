"""Shared by the benchmark scripts: models with random weights, a random batch, interleaved timing."""
import statistics
import time

import torch

import fairseq_wd  # noqa: F401  (registers the wd_* architectures)
from fairseq import options
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel


class Task:
    """Just the dictionaries a model needs, plus a teacher for logit_kd."""

    def __init__(self, vocab):
        self.source_dictionary = self.target_dictionary = Dictionary()
        for i in range(vocab - 4):
            self.target_dictionary.add_symbol(str(i))
        self.teacher = None

    def teacher_output(self, student, net_input, **kw):
        with torch.no_grad():
            return self.teacher(**net_input, **kw)


def build(arch, task, *extra):
    args = options.parse_args_and_arch(options.get_training_parser(), ["x", "--arch", arch, *extra])
    return TransformerModel.build_model(args, task)


def random_batch(task, bsz, length):
    v = len(task.target_dictionary)
    target = torch.randint(4, v, (bsz, length))
    prev = torch.cat([torch.full((bsz, 1), task.target_dictionary.eos()), target[:, :-1]], 1)
    return {"net_input": {"src_tokens": torch.randint(4, v, (bsz, length)), "src_lengths": torch.full((bsz,), length),
                          "prev_output_tokens": prev}, "target": target, "ntokens": bsz * length}


def train_step(model, criterion, sample, optimizer):
    optimizer.zero_grad()
    loss, _, _ = criterion(model, sample)
    loss.backward()
    optimizer.step()


def median_step_times(variants, repeats, steps):
    """variants: {name: zero-argument step function}. Rounds interleave the variants."""
    for fn in variants.values():  # warm-up
        fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}
