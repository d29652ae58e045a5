"""The training recipes: one table that `fairseq-wd-pipeline --budget NAME` runs, that writes the
hydra configs (hydra_configs/make_configs.py) and that the paper scripts read
(`fairseq-wd-recipe NAME`, sourced by examples/common/run_paper.sh).

Every student gets the same number of updates; Weight Distillation splits them between its two
phases (`Recipe.wd_phase_updates`), so WD never sees more data than its baselines.

`demo` is `make demo` (15 minutes on a 2-core CPU; the shipped teacher saves its 10 minutes of
training), at equal updates; `cpu` trains the demo's teacher and students to convergence (fairseq's
--patience; hours on that CPU); `multilingual` is one teacher for two pairs (`fairseq-wd-pipeline --pair`);
`full` is for a GPU (hours on that CPU): a bigger teacher trained longer; `paper` is the WD authors' released settings (docs/methods.md) for
the WMT/NIST recipes on 8 GPUs.
"""
import json
from dataclasses import dataclass, field, replace
from typing import List

from . import early_stopping




def transformer(dim, ffn, heads, enc_layers, dec_layers=None):
    flags = ["--encoder-embed-dim", dim, "--encoder-ffn-embed-dim", ffn, "--encoder-attention-heads", heads,
             "--decoder-attention-heads", heads, "--encoder-layers", enc_layers]
    if dec_layers is not None:
        flags += ["--decoder-layers", dec_layers]
    return [str(f) for f in flags]


@dataclass
class Recipe:
    vocab_size: int
    teacher: List[str]              # fairseq-train --arch ... flags
    student_encoder: List[str]      # encoder dims shared by TINY/SMALL students (decoder from the arch)
    teacher_updates: int
    student_updates: int            # every student gets the same number; WD splits it between its phases
    train: List[str] = field(default_factory=list)  # fairseq-train flags of every training (no device flags)
    label_smoothing: float = 0.1    # of every criterion that has it (all but ptp)
    kd_alpha: float = 0.5           # weight of word-level KD against the online teacher (logit_kd, pkd)
    average_last: int = 0           # the teacher is the average of its last N epoch checkpoints (0: its best)
    distill: List[str] = field(default_factory=lambda: ["--beam", "4", "--batch-size", "128"])  # teacher output
    sps_reuse: str = "all"          # --methods pea-kd: Pea-KD reuses all of 3 layers, the top half of 6
    bench_repeats: int = 3
    wd_phase1: List[str] = field(default_factory=list)  # extra fairseq-train flags of WD's two phases
    wd_phase2: List[str] = field(default_factory=list)
    # Decoding length limit of every row (fairseq-generate's a * source length + b): an undertrained
    # student that loops stops near a real translation's length, so speed measures model cost.
    max_len_a: float = 1.5
    max_len_b: int = 10
    # A training has converged when its best validation (by the selection metric) lies at least this share
    # of its updates before its end; checkpoint_best.pt is that best one.
    converged_share: float = 0.2
    # Early stopping (fairseq's --patience: validations without a better selection metric, valid BLEU by
    # default), validating and saving every `validate_interval_updates`; the update counts are then caps.
    # 0: every training runs its full update count (the paper's view at equal updates).
    patience: int = 0
    validate_interval_updates: int = 0

    def stopping(self, scale=1.0):
        """fairseq-train flags of the recipe's early stopping (none without patience)."""
        return early_stopping.patience_flags(self.patience, early_stopping.validation_interval(
            self.validate_interval_updates, scale), keep_epoch_validations=bool(self.average_last))

    def wd_phase_updates(self, total=None):
        """(phase 1, phase 2) updates: WD's two phases share one student's updates, half each."""
        total = self.student_updates if total is None else total
        return total // 2, total - total // 2

    def validation(self, post_process="sentencepiece", select_by="bleu"):
        """Every training validates with fairseq's --eval-bleu (beam 4, the bench's length limit): the
        BLEU-vs-updates curves (sacrebleu's 13a tokenizer: fairseq offers no other). `select_by` "bleu":
        checkpoint_best.pt and --patience follow valid BLEU (fairseq's --best-checkpoint-metric bleu
        --maximize-best-checkpoint-metric); "loss": fairseq's default, valid loss."""
        gen = json.dumps({"beam": 4, "max_len_a": self.max_len_a, "max_len_b": self.max_len_b})
        return ["--eval-bleu", "--eval-bleu-args", gen, "--eval-bleu-detok", "space",
                "--eval-bleu-remove-bpe", post_process, *early_stopping.selection_flags(select_by)]


_ADAM = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr-scheduler", "inverse_sqrt"]

# 3-3 d128 teacher: what 10 CPU minutes can train to a usable BLEU on mpl.en-ro (18 BLEU). The default
# two students (KD baseline, WD) train in about 8 minutes side by side (`--jobs 2`, one thread each).
DEMO = Recipe(
    vocab_size=4000,
    teacher=["--arch", "wd_transformer_base", *transformer(128, 512, 4, 3, 3)],
    student_encoder=transformer(128, 512, 4, 3),
    teacher_updates=600, student_updates=1000, bench_repeats=2,
    train=[*_ADAM, "--no-epoch-checkpoints", "--seed", "1", "--lr", "0.002", "--warmup-updates", "100",
           "--max-tokens", "4096", "--dropout", "0.1", "--log-interval", "25"],
)

RECIPES = {
    "demo": DEMO,
    # The demo's sizes trained to convergence on the 2-core CPU: every training stops when its selection
    # metric (valid BLEU unless --select-by loss) has not improved for 4 validations of 250 updates (the
    # counts are caps); results.md says per training which stopped it.
    "cpu": replace(DEMO, teacher_updates=8000, student_updates=16000, bench_repeats=3, patience=4,
                   validate_interval_updates=250),
    # One multilingual teacher (fairseq-wd-pipeline --pair) of the demo's size for two pairs of ~10k-20k
    # sentences (mpl.en-ro + mpl20k.en-de), a joint vocabulary for three languages, students at equal
    # updates: 56 minutes on the 2-core CPU. Its steps' speed there (teacher ~0.75 updates/s, its train-set
    # decoding ~40 sentences/s, a TINY student ~1.4 updates/s) put 1000 updates each near 70 minutes.
    "multilingual": replace(DEMO, vocab_size=6000, teacher_updates=800, student_updates=700),
    # A teacher sized for a ~10k-pair corpus (6-6 d256, dropout 0.3): hours on the 2-core CPU, minutes
    # on a GPU (add --fp16). The paper's base 6-6 d512 would only overfit this little data.
    "full": Recipe(
        vocab_size=8000,
        teacher=["--arch", "wd_transformer_base", *transformer(256, 1024, 4, 6, 6)],
        student_encoder=transformer(256, 1024, 4, 6),
        teacher_updates=6000, student_updates=3000, distill=["--beam", "5", "--batch-size", "128"],
        bench_repeats=3, sps_reuse="top-half",
        train=[*_ADAM, "--no-epoch-checkpoints", "--seed", "1", "--lr", "0.001", "--warmup-updates", "1000",
               "--max-tokens", "4096", "--dropout", "0.3", "--log-interval", "100"],
    ),
    # The WD authors' released scripts: Adam (0.9, 0.98), no clipping, inverse_sqrt from 1e-7, lr 7e-4,
    # warmup 4000 (phase 2: 1000), ~32k target tokens per update (8 GPUs x 4096), the teacher's last 5
    # epoch checkpoints averaged, teacher output by beam 6 / lenpen 1.0 / batch 64, WD phases of 30k
    # updates each; the students of one size all get those 60k. Sizes and dropout: the architectures.
    "paper": Recipe(
        vocab_size=32000,
        teacher=["--arch", "wd_transformer_base"], student_encoder=[],
        teacher_updates=100000, student_updates=60000, average_last=5,
        distill=["--beam", "6", "--lenpen", "1.0", "--batch-size", "64"],
        train=[*_ADAM, "--clip-norm", "0", "--warmup-init-lr", "1e-07", "--lr", "0.0007", "--warmup-updates", "4000",
               "--max-tokens", "4096", "--keep-last-epochs", "5", "--seed", "1", "--log-interval", "100"],
        wd_phase2=["--warmup-updates", "1000"],
    ),
}
