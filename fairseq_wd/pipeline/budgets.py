"""Model sizes and update counts of `fairseq-wd-pipeline --budget`.

`demo` fits `make demo` in 30 minutes on a 2-core CPU (the shipped teacher saves its 10 minutes);
`full` is for a GPU (hours on that CPU): a teacher trained long enough for the comparison to mean
something.
"""
from dataclasses import dataclass, field
from typing import List


def transformer(dim, ffn, heads, enc_layers, dec_layers=None):
    flags = ["--encoder-embed-dim", dim, "--encoder-ffn-embed-dim", ffn, "--encoder-attention-heads", heads,
             "--decoder-attention-heads", heads, "--encoder-layers", enc_layers]
    if dec_layers is not None:
        flags += ["--decoder-layers", dec_layers]
    return [str(f) for f in flags]


@dataclass
class Budget:
    vocab_size: int
    teacher: List[str]              # fairseq-train --arch ... flags
    student_encoder: List[str]      # encoder dims shared by TINY/SMALL students (decoder from the arch)
    teacher_updates: int
    student_updates: int            # every student gets the same number; WD splits it between its phases
    train: List[str] = field(default_factory=list)
    label_smoothing: float = 0.1    # of every criterion that has it (all but ptp)
    sps_reuse: str = "all"          # --pea-kd: Pea-KD reuses all of 3 layers, the top half of 6
    distill_beam: int = 4
    bench_repeats: int = 3


_ADAM = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr-scheduler", "inverse_sqrt",
         "--no-epoch-checkpoints", "--seed", "1"]

BUDGETS = {
    # 3-3 d128 teacher: what 10 CPU minutes can train to a usable BLEU on mpl.en-ro (18 BLEU).
    "demo": Budget(
        vocab_size=4000,
        teacher=["--arch", "wd_transformer_base", *transformer(128, 512, 4, 3, 3)],
        student_encoder=transformer(128, 512, 4, 3),
        teacher_updates=600, student_updates=240, distill_beam=4, bench_repeats=2,
        train=[*_ADAM, "--lr", "0.002", "--warmup-updates", "100", "--max-tokens", "4096", "--dropout", "0.1",
               "--log-interval", "25"],
    ),
    # A teacher sized for a ~10k-pair corpus (6-6 d256, dropout 0.3): hours on the 2-core CPU, minutes
    # on a GPU (add --fp16). The paper's base 6-6 d512 would only overfit this little data.
    "full": Budget(
        vocab_size=8000,
        teacher=["--arch", "wd_transformer_base", *transformer(256, 1024, 4, 6, 6)],
        student_encoder=transformer(256, 1024, 4, 6),
        teacher_updates=6000, student_updates=3000, distill_beam=5, bench_repeats=3, sps_reuse="top-half",
        train=[*_ADAM, "--lr", "0.001", "--warmup-updates", "1000", "--max-tokens", "4096", "--dropout", "0.3",
               "--log-interval", "100"],
    ),
}
