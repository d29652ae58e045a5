"""`fairseq-wd-pipeline --pair en-ro=A.tsv --pair en-de=B.tsv`: one multilingual teacher for every pair and
its students, as NLLB-200 and M2M-100 are trained: fairseq's translation_multi_simple_epoch with one
joint sentencepiece model and dictionary, language tokens (`--encoder-langtok src --decoder-langtok`),
temperature sampling over the pairs and shared embeddings. The students train under the plugin's
`_multi_simple_epoch` tasks; CTranslate2 copies and the bench take every pair in turn (a table each and
their average). The steps and their keys are the bilingual pipeline's.

`fairseq-wd-pipeline --data-bin DIR --teacher CKPT --pair en-ro --pair en-de`: a given multilingual teacher
(NLLB-200, M2M-100, or one trained with translation_multi_simple_epoch) distilled on its pairs, binarized in
DIR with its dictionary. Its language options (--lang-dict or --langs, --fixed-dictionary or
--source-dict/--target-dict, --langtoks, --encoder-langtok, --decoder-langtok, --lang-tok-style,
--langtoks-specs) are read from its checkpoint and given to every student, its distillation data and the
bench; --references SRC-TGT=FILE gives a pair's test references."""
import argparse
import os
import shlex
import shutil

from .. import languages
from ..checkpoints import load_state, task_config
from ..teacher.checkpoint import Teacher
from . import corpus, inputs
from .experiment import MAX_POSITIONS, Pipeline

METHODS = ("kd", "logit_kd", "pkd", "wd")  # the students whose tasks have a multilingual version
LANGS_FILE = "langs.txt"  # the language list that numbers the language tokens, in the data-bin


def parse_pair(spec):
    """--pair SRC-TGT=TSV -> (src, tgt, absolute tsv path); --pair SRC-TGT (a pair of --data-bin, with
    --teacher) -> (src, tgt, None)."""
    pair, sep, tsv = spec.partition("=")
    langs = pair.split("-")
    if (sep and not tsv) or len(langs) != 2 or not all(langs) or langs[0] == langs[1]:
        raise argparse.ArgumentTypeError(f"--pair {spec!r}: write SRC-TGT=TSV, e.g. --pair en-ro=mpl.en-ro.tsv.xz "
                                         "(or SRC-TGT, a pair of --data-bin, with --teacher)")
    return langs[0], langs[1], os.path.abspath(tsv) if tsv else None


def given_pairs(args):
    """With --teacher: the --pair list checked as pairs of --data-bin (no TSV), and --references as
    SRC-TGT=FILE of those pairs."""
    if not args.data_bin:
        raise corpus.CorpusError("--teacher with --pair needs --data-bin: every pair's train, valid and test "
                                 "splits binarized with the teacher's dictionary (fairseq-preprocess --srcdict "
                                 "TEACHER_DICT --tgtdict TEACHER_DICT), then --pair SRC-TGT for each")
    with_tsv = [f"{s}-{t}" for s, t, tsv in args.pair if tsv]
    if with_tsv:
        raise corpus.CorpusError(f"--pair {with_tsv[0]}=...: with --data-bin and --teacher the pairs are read from "
                                 f"the data-bin; write --pair {with_tsv[0]}")
    names = [f"{s}-{t}" for s, t, _ in args.pair]
    for spec in args.references or []:
        pair, sep, path = spec.partition("=")
        if not sep or pair not in names:
            raise corpus.CorpusError(f"--references {spec!r}: with --pair write SRC-TGT=FILE for a pair of --pair "
                                     f"({', '.join(names)})")
        if not os.path.isfile(path):
            raise corpus.CorpusError(f"--references {spec!r}: {path} not found")


class MultilingualPipeline(Pipeline):
    """The bilingual pipeline's steps with a multilingual corpus, teacher, tasks and bench."""

    def __init__(self, args):
        if args.data_bin and not (args.source_lang and args.target_lang):  # the first pair names the run's
            args = argparse.Namespace(**{**vars(args), "source_lang": args.pair[0][0], "target_lang": args.pair[0][1]})
        super().__init__(args)
        self.pairs = args.pair
        self.src, self.tgt = self.pairs[0][:2]
        self.given = None  # inputs.GivenTeacher of --teacher, once checked
        self.teacher_languages = None  # the given teacher's language flags
        if args.teacher:
            refused = [o for o in ("tsv", "source_file", "target_file", "teacher_dict", "teacher_spm", "train_teacher",
                                   "pack_teacher", *(f"{s}_{k}" for s in ("valid", "test")
                                                     for k in ("tsv", "source", "target"))) if getattr(args, o)]
            if refused:
                raise corpus.CorpusError(f"--teacher with --pair distils the given teacher on --data-bin: drop "
                                         f"--{refused[0].replace('_', '-')} (the teacher's dictionary options are "
                                         "read from its checkpoint)")
            given_pairs(args)
        else:
            given = [o for o in ("tsv", "source_file", "data_bin", "references", *(
                f"{s}_{k}" for s in ("valid", "test") for k in ("tsv", "source", "target"))) if getattr(args, o)]
            if given:
                raise corpus.CorpusError(f"--pair trains a multilingual teacher here from the --pair corpora: drop "
                                         f"--{given[0].replace('_', '-')} (or give the teacher: --data-bin DIR "
                                         "--teacher CKPT --pair SRC-TGT ...)")
            without = [f"{s}-{t}" for s, t, tsv in args.pair if not tsv]
            if without:
                raise corpus.CorpusError(f"--pair {without[0]}: give its corpus, --pair {without[0]}=TSV (SRC-TGT "
                                         "alone names a pair of --data-bin, with --teacher)")
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
        """The teacher's language settings, which every task of its students repeats: a given teacher's
        from its checkpoint (languages.teacher_flags), else those it is trained with here."""
        pairs = ["--lang-pairs", ",".join(f"{s}-{t}" for s, t, _ in self.pairs)]
        sampling = ["--sampling-method", "temperature", "--sampling-temperature", "1.5"]
        if self.args.teacher:
            if self.teacher_languages is None:
                self.teacher_languages = languages.teacher_flags(
                    task_config(load_state(os.path.abspath(self.args.teacher), "--teacher")), self.data_bin)
            return [*pairs, *self.teacher_languages, *sampling]
        return [*pairs, "--lang-dict", os.path.join(self.data_bin, LANGS_FILE), "--encoder-langtok", "src",
                "--decoder-langtok", *sampling]

    def task(self, name):
        task = "translation_multi_simple_epoch" if name == "translation" else f"{name}_multi_simple_epoch"
        return ["--task", task, *self.language_flags()]

    def validation(self):
        return []  # translation_multi_simple_epoch has no --eval-bleu: valid loss only

    def teacher_flags(self):
        return ["--share-all-embeddings"]  # as NLLB-200 and M2M-100

    def student_flags(self, family="wd_transformer"):
        """SMALL keeps the teacher's shared embeddings (a given teacher's, where it shares them); TINY's
        narrower decoder cannot share the encoder's, and ties its own to its output layer (WD generates both
        from the teacher's one matrix)."""
        if self.args.student != "small":
            shared = ["--share-decoder-input-output-embed"]
        elif self.given is None or self.given.share_all_embeddings:
            shared = ["--share-all-embeddings"]
        else:
            shared = []  # the teacher's own --share-decoder-input-output-embed, if any, is in its encoder flags
        return [*super().student_flags(family), *shared]

    def bench_inputs(self):
        if self.args.teacher:  # the given SRC-TGT=FILE; else the bench's own: the data-bin's test targets
            references = [f"--references={r.partition('=')[0]}={os.path.abspath(r.partition('=')[2])}"
                          for r in self.args.references or []]
        else:
            references = [f"--references={s}-{t}={self.path('raw', f'{s}-{t}', f'test.{t}')}" for s, t, _ in self.pairs]
        return [*references, f"--generate-args={shlex.join(map(str, self.task('translation')))}"]

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
        if self.args.teacher:
            self.given = inputs.given_multilingual_teacher(self.args, [(s, t) for s, t, _ in self.pairs],
                                                           self.language_flags())
            inputs.check_wd_depths(self.args, self.given, None)
            self.step("data: the given data-bin")
            print(f"{self.data_bin}: the pairs {', '.join(f'{s}-{t}' for s, t, _ in self.pairs)}, binarized with "
                  "the teacher's dictionary")
            teacher = self.teacher(self.given)
            self.student_encoder = self.given.encoder_flags
            return teacher
        inputs.check_wd_depths(self.args, None, self.recipe.teacher)
        self.prepare(None)
        teacher = self.teacher(None)
        self.student_encoder = inputs.teacher_encoder_flags(Teacher(teacher))
        return teacher

    def learning_curves(self, teacher):
        return ("No valid BLEU curves: translation_multi_simple_epoch has no --eval-bleu; each training's valid "
                "loss (all pairs) decides its early stopping.\n\n" + self.stopping_table())
