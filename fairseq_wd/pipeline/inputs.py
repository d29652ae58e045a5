"""What the pipeline is given, checked before any long work: the language pair, a data-bin, and a
teacher (its dictionaries, its decoder depth against WD's student, the encoder its students keep)."""
import argparse
import glob
import os
import shlex
from dataclasses import dataclass
from typing import List, Optional

from ..checkpoints import CheckpointError
from ..teacher.checkpoint import Teacher, teacher_dictionaries
from .corpus import SPLITS, CorpusError

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_TEACHER = os.path.join(PACKAGE, "data", "demo_teacher")
STUDENT_DECODER_LAYERS = {"tiny": 1, "small": 2}
# what a student keeps of its teacher: the encoder, the heads, where LayerNorms sit, the activation
KEPT = ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers", "encoder_attention_heads",
        "decoder_attention_heads", "activation_fn")
KEPT_SWITCHES = ("encoder_normalize_before", "decoder_normalize_before", "share_decoder_input_output_embed")


@dataclass
class GivenTeacher:
    """A teacher not trained here, read once for its checks; only what the pipeline needs is kept."""
    checkpoint: str
    dictionary: Optional[str]       # None with --data-bin, whose dictionaries it was checked against
    spm: Optional[str]
    decoder_layers: int
    encoder_flags: List[str]
    share_all_embeddings: bool = False


def languages(args):
    """(source, target): as given, else --data-bin's pair, else the shipped corpus's en-ro."""
    if args.data_bin and not (args.source_lang and args.target_lang):
        pairs = sorted({os.path.basename(f).split(".")[1]
                        for f in glob.glob(os.path.join(args.data_bin, "train.*-*.*.idx"))})
        if not pairs:
            raise CorpusError(f"--data-bin {args.data_bin}: no train.SRC-TGT.*.idx files; is it the output "
                              "of fairseq-preprocess?")
        if len(pairs) > 1:
            raise CorpusError(f"--data-bin {args.data_bin} holds several language pairs ({', '.join(pairs)}): "
                              "give --source-lang and --target-lang")
        return tuple(pairs[0].split("-"))
    return args.source_lang or "en", args.target_lang or "ro"


def check_data_bin(args, src, tgt):
    mixed = [o for o in ("tsv", "source_file", "target_file", *(f"{s}_{k}" for s in ("valid", "test")
                                                                for k in ("tsv", "source", "target")))
             if getattr(args, o)]
    if mixed:
        raise CorpusError(f"--data-bin is already binarized: drop --{mixed[0].replace('_', '-')}")
    needed = [f"dict.{lang}.txt" for lang in (src, tgt)] + [
        f"{split}.{src}-{tgt}.{lang}.{ext}" for split in SPLITS for lang in (src, tgt) for ext in ("bin", "idx")]
    missing = [f for f in needed if not os.path.isfile(os.path.join(args.data_bin, f))]
    if missing:
        raise CorpusError(f"--data-bin {args.data_bin} lacks {', '.join(missing[:4])}: binarize train, "
                          "valid and test with fairseq-preprocess (--trainpref, --validpref, --testpref)")


def given_teacher(args, src, tgt):
    """A given or shipped teacher, its embeddings checked against the dictionaries; None to train one."""
    if args.data_bin:
        check_data_bin(args, src, tgt)
        if not args.teacher:
            return None
        checkpoint, dictionary, spm = os.path.abspath(args.teacher), None, None
        dictionaries = [os.path.join(args.data_bin, f"dict.{lang}.txt") for lang in (src, tgt)]
        own = teacher_dictionaries(args.teacher_dict, src, tgt) if args.teacher_dict else None
    else:
        if args.teacher:
            folder = os.path.dirname(os.path.abspath(args.teacher))
            checkpoint = os.path.abspath(args.teacher)  # steps know their inputs by absolute paths
            dictionary = args.teacher_dict or os.path.join(folder, "dict.txt")
            spm = args.teacher_spm or os.path.join(folder, "spm.model")
        elif args.train_teacher or args.tsv or args.source_file or args.budget != "demo":
            return None
        else:
            checkpoint, dictionary, spm = (os.path.join(SHIPPED_TEACHER, f)
                                           for f in ("checkpoint.pt", "dict.txt", "spm.model"))
        for what, path in zip(("--teacher", "--teacher-dict", "--teacher-spm"), (checkpoint, dictionary, spm)):
            if not os.path.isfile(path):
                raise CheckpointError(f"{what}: {path} not found. A given teacher needs the dictionary and the "
                                      "sentencepiece model its data was made with (--teacher-dict, --teacher-spm), "
                                      "or its binarized data (--data-bin).")
        dictionaries = [dictionary, dictionary]
        own = None  # the data is binarized here with this very dictionary
    from fairseq.data import Dictionary

    teacher = Teacher(checkpoint)  # read once for every check; not kept while the trainings run
    teacher.check_dictionaries(*(Dictionary.load(path) for path in dictionaries), names=dictionaries,
                               teacher_dicts=own)
    return GivenTeacher(checkpoint, dictionary, spm, teacher.decoder_layers, teacher_encoder_flags(teacher))


def given_multilingual_teacher(args, pairs, language_flags):
    """A given multilingual teacher checked on --data-bin before any work, by the task its students train
    under (distillation_multi_simple_epoch with `language_flags`, the teacher's own): every pair's
    splits, the teacher's language settings and embedding rows against the dictionaries fairseq makes from
    those flags (every symbol against the teacher's own dictionary files where they are here), and the
    data-bin's dictionaries as their start."""
    from fairseq import options, tasks

    from .. import languages

    missing = [f"{split}.{s}-{t}.{lang}.{ext}" for s, t in pairs for split in SPLITS for lang in (s, t)
               for ext in ("bin", "idx") if not os.path.isfile(os.path.join(args.data_bin, f"{split}.{s}-{t}.{lang}.{ext}"))]
    if missing:
        raise CorpusError(f"--data-bin {args.data_bin} lacks {', '.join(missing[:4])}: binarize every --pair's "
                          "train, valid and test with fairseq-preprocess (--srcdict/--tgtdict the teacher's dictionary)")
    checkpoint = os.path.abspath(args.teacher)
    if not os.path.isfile(checkpoint):
        raise CheckpointError(f"--teacher {checkpoint} not found")
    if "--lang-tok-replacing-bos-eos" in language_flags:
        raise CheckpointError("the teacher was trained with --lang-tok-replacing-bos-eos, which neither its teacher "
                              "output (fairseq-wd-distill-data) nor CTranslate2 supports")
    parsed = options.parse_args_and_arch(options.get_training_parser(), [
        args.data_bin, "--user-dir", PACKAGE, "--task", "distillation_multi_simple_epoch", *language_flags,
        "--teacher-path", checkpoint, "--arch", "transformer"])
    task = tasks.setup_task(parsed)
    teacher = task.teacher  # TeacherAware's checks, as when a student is built
    languages.check_data_dictionaries(task, args.data_bin)
    return GivenTeacher(checkpoint, None, None, teacher.decoder_layers, teacher_encoder_flags(teacher),
                        bool(getattr(teacher.args, "share_all_embeddings", False)))


def check_wd_depths(args, given, teacher_flags):
    """WD groups teacher layers per student layer: refuse a teacher whose decoder depth is no multiple
    of the student's before hours of teacher training and teacher output, not when phase 1 starts."""
    if "wd" not in args.methods:
        return
    teacher = given.decoder_layers if given else decoder_layers([*teacher_flags, *shlex.split(args.teacher_args)])
    student = STUDENT_DECODER_LAYERS[args.student]
    if teacher % student:
        raise CheckpointError(
            f"--methods wd with --student {args.student}: the teacher's decoder has {teacher} layers and "
            f"the student's {student}; Weight Distillation maps a group of teacher layers to each student layer, "
            f"so the teacher's depth must be a multiple of the student's. Use --student tiny, or a teacher with "
            f"{teacher + student - teacher % student} decoder layers (--teacher-args='--decoder-layers N' when "
            "it is trained here)")


def teacher_encoder_flags(teacher):
    """fairseq-train flags that give a student its teacher's encoder (a given teacher of any size)."""
    args = teacher.args
    return ([f"--{k.replace('_', '-')}={getattr(args, k)}" for k in KEPT if getattr(args, k, None) is not None]
            + [f"--{k.replace('_', '-')}" for k in KEPT_SWITCHES if getattr(args, k, False)])


def decoder_layers(flags):
    """The decoder depth that fairseq-train flags give (the last --decoder-layers wins; 6 by default)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--decoder-layers", type=int, default=6)
    return parser.parse_known_args(flags)[0].decoder_layers
