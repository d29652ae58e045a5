"""`fairseq-wd-pipeline --pair en-ro=A.tsv --pair en-de=B.tsv`: one multilingual teacher for every pair and
its students, as NLLB-200 and M2M-100 are trained: fairseq's translation_multi_simple_epoch with one
joint sentencepiece model and dictionary, language tokens (`--encoder-langtok src --decoder-langtok`),
temperature sampling over the pairs and shared embeddings. The students train under the plugin's
`_multi_simple_epoch` tasks; CTranslate2 copies and the bench take every pair in turn (a table each and
their average). The steps and their keys are the bilingual pipeline's."""
import argparse
import os
import shlex
import shutil

from ..teacher import Teacher
from . import corpus, inputs
from .experiment import MAX_POSITIONS, Pipeline

METHODS = ("kd", "logit_kd", "pkd", "wd")  # the students whose tasks have a multilingual version
LANGS_FILE = "langs.txt"  # the language list that numbers the language tokens, in the data-bin


def parse_pair(spec):
    """--pair SRC-TGT=TSV -> (src, tgt, absolute tsv path)."""
    pair, sep, tsv = spec.partition("=")
    langs = pair.split("-")
    if not sep or not tsv or len(langs) != 2 or not all(langs) or langs[0] == langs[1]:
        raise argparse.ArgumentTypeError(f"--pair {spec!r}: write SRC-TGT=TSV, e.g. --pair en-ro=mpl.en-ro.tsv.xz")
    return langs[0], langs[1], os.path.abspath(tsv)


class MultilingualPipeline(Pipeline):
    """The bilingual pipeline's steps with a multilingual corpus, teacher, tasks and bench."""

    def __init__(self, args):
        super().__init__(args)
        self.pairs = args.pair
        self.src, self.tgt = self.pairs[0][:2]
        given = [o for o in ("tsv", "source_file", "data_bin", "teacher", "references", *(
            f"{s}_{k}" for s in ("valid", "test") for k in ("tsv", "source", "target"))) if getattr(args, o)]
        if given:
            raise corpus.CorpusError(f"--pair trains a multilingual teacher here from the --pair corpora: drop "
                                     f"--{given[0].replace('_', '-')} (a given multilingual teacher is distilled with "
                                     "fairseq-train --task distillation_multi_simple_epoch, see the README)")
        if args.shortlist:
            raise corpus.CorpusError("--shortlist is bilingual only (a shortlist maps one source language to one "
                                     "target language): drop it with --pair")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise corpus.CorpusError(f"--methods {unknown[0]} with --pair: the multilingual pipeline trains "
                                     f"{', '.join(METHODS)}")
        if len({(s, t) for s, t, _ in self.pairs}) != len(self.pairs):
            raise corpus.CorpusError("--pair: the same language pair twice")

    def language_flags(self):
        """The teacher's language settings, which every task of its students repeats."""
        return ["--lang-pairs", ",".join(f"{s}-{t}" for s, t, _ in self.pairs), "--lang-dict",
                os.path.join(self.data_bin, LANGS_FILE), "--encoder-langtok", "src", "--decoder-langtok",
                "--sampling-method", "temperature", "--sampling-temperature", "1.5"]

    def task(self, name):
        task = "translation_multi_simple_epoch" if name == "translation" else f"{name}_multi_simple_epoch"
        return ["--task", task, *self.language_flags()]

    def validation(self):
        return []  # translation_multi_simple_epoch has no --eval-bleu: valid loss only

    def teacher_flags(self):
        return ["--share-all-embeddings"]  # as NLLB-200 and M2M-100

    def student_flags(self, family="wd_transformer"):
        """SMALL keeps the teacher's shared embeddings; TINY's narrower decoder cannot share the encoder's,
        and ties its own to its output layer (WD generates both from the teacher's one matrix)."""
        shared = "--share-all-embeddings" if self.args.student == "small" else "--share-decoder-input-output-embed"
        return [*super().student_flags(family), shared]

    def bench_inputs(self):
        return [*(f"--references={s}-{t}={self.path('raw', f'{s}-{t}', f'test.{t}')}" for s, t, _ in self.pairs),
                f"--generate-args={shlex.join(map(str, self.task('translation')))}"]

    def prepare(self, teacher):
        """Each pair split as the bilingual corpus, one sentencepiece model on every train side, one joint
        dictionary (fairseq-preprocess --dict-only over all), then each pair binarized with it."""
        a = self.args
        self.step("corpus: split each pair, joint sentencepiece, fairseq-preprocess with one joint dictionary")
        settings = {"pairs": [[s, t] for s, t, _ in self.pairs], "test_size": a.test_size,
                    "valid_size": a.valid_size, "vocab_size": self.recipe.vocab_size,
                    "character_coverage": a.character_coverage, "max_positions": MAX_POSITIONS}
        if self.begin(self.data_bin, settings, {self.portable(tsv): self.key_of(tsv) for _, _, tsv in self.pairs},
                      restore=False):
            return
        notes, sides, langs = [], [], []
        for src, tgt, tsv in self.pairs:
            splits, removed = corpus.split(corpus.read_pairs(tsv), a.test_size, a.valid_size)
            raw = self.path("raw", f"{src}-{tgt}")
            corpus.write_splits(splits, raw, src, tgt)
            notes.append(f"{src}-{tgt}: " + ", ".join(
                f"{name} {len(rows)}" + (f" ({removed[name]} removed whose source occurs in train)"
                                         if removed.get(name) else "") for name, rows in splits.items()))
            sides += [os.path.join(raw, f"train.{lang}") for lang in (src, tgt)]
            langs += [lang for lang in (src, tgt) if lang not in langs]
        print("\n".join(notes))
        with open(self.path("raw", "splits.txt"), "w") as f:
            f.write("; ".join(notes) + "\n")
        coverage = a.character_coverage or max(corpus.character_coverage(s, t) for s, t, _ in self.pairs)
        spm_model = corpus.train_sentencepiece(sides, self.path("spm"), self.recipe.vocab_size, coverage)
        for src, tgt, _ in self.pairs:
            corpus.encode(self.path("raw", f"{src}-{tgt}"), src, tgt, spm_model, max_positions=MAX_POSITIONS)
        joint = self.path("raw", "joint")
        with open(f"{joint}.src", "w") as s, open(f"{joint}.tgt", "w") as t:
            for src, tgt, _ in self.pairs:
                for lang, out in ((src, s), (tgt, t)):
                    with open(self.path("raw", f"{src}-{tgt}", f"train.spm.{lang}")) as f:
                        shutil.copyfileobj(f, out)
        for folder in (self.data_bin, self.path("raw", "joint-dict")):
            shutil.rmtree(folder, ignore_errors=True)  # fairseq-preprocess refuses to overwrite a dictionary
        self.sh("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", joint,
                "--joined-dictionary", "--dict-only", "--destdir", self.path("raw", "joint-dict"), "--workers", "2")
        for src, tgt, _ in self.pairs:
            self.sh("fairseq-preprocess", *corpus.preprocess_args(self.path("raw", f"{src}-{tgt}"), src, tgt,
                                                                   self.data_bin,
                                                                   self.path("raw", "joint-dict", "dict.src.txt")))
        with open(os.path.join(self.data_bin, LANGS_FILE), "w") as f:
            f.writelines(lang + "\n" for lang in langs)
        self.finish(self.data_bin)

    def data_and_teacher(self):
        inputs.check_wd_depths(self.args, None, self.recipe.teacher)
        self.prepare(None)
        teacher = self.teacher(None)
        self.student_encoder = inputs.teacher_encoder_flags(Teacher(teacher))
        return teacher

    def learning_curves(self, teacher):
        return ("No valid BLEU curves: translation_multi_simple_epoch has no --eval-bleu; each training's valid "
                "loss (all pairs) decides its early stopping.\n\n" + self.stopping_table())
