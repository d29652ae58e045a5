"""What the plugin needs of fairseq's `translation_multi_simple_epoch` (NLLB-200, M2M-100, IndicTrans2
teachers): a teacher checked against its one joint dictionary, language tokens included, and against
its language settings, since a teacher that was trained with other language token ids reads the
data's tokens as other languages without any error of fairseq's."""
import logging
import os

from fairseq.data import Dictionary
from fairseq.data.multilingual.multilingual_utils import augment_dictionary, get_lang_tok
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from .checkpoints import CheckpointError, task_config

logger = logging.getLogger(__name__)

# language settings a teacher and its student must share: (option, command-line flag, fairseq's default)
SETTINGS = (("lang_tok_style", "--lang-tok-style", "multilingual"), ("encoder_langtok", "--encoder-langtok", None),
            ("decoder_langtok", "--decoder-langtok", False),
            ("lang_tok_replacing_bos_eos", "--lang-tok-replacing-bos-eos", False),
            ("langtoks_specs", "--langtoks-specs", ["main"]))


def is_multilingual(task):
    return isinstance(task, TranslationMultiSimpleEpochTask)


def option(cfg, name, default=None):
    """A task option of a saved config (a dict) or of parsed args (a Namespace)."""
    return cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)


def pairs(cfg):
    """The language pairs of a multilingual task's args or config, as (src, tgt)."""
    lang_pairs = option(cfg, "lang_pairs")
    lang_pairs = lang_pairs.split(",") if isinstance(lang_pairs, str) else list(lang_pairs)
    return [tuple(p.split("-")) for p in lang_pairs]


def languages(task_cfg):
    """(the language list that numbers a multilingual task's language tokens, where it came from), as
    fairseq's MultilingualDatasetManager.load_langs finds it; the list is None where the --lang-dict file
    is not on this machine."""
    if task_cfg.get("langs"):
        langs = task_cfg["langs"]
        return (langs.split(",") if isinstance(langs, str) else list(langs)), "--langs"
    if task_cfg.get("lang_dict"):
        path = task_cfg["lang_dict"]
        if not os.path.isfile(path):
            return None, f"--lang-dict {path}, not found here"
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()], f"--lang-dict {path}"
    lang_pairs = task_cfg.get("lang_pairs") or []
    lang_pairs = lang_pairs.split(",") if isinstance(lang_pairs, str) else lang_pairs
    return sorted({lang for p in lang_pairs for lang in p.split("-")}), "inferred from --lang-pairs (sorted)"


def setting(flag, value):
    if isinstance(value, bool) or value is None:
        return flag if value else f"no {flag}"
    return f"{flag} {','.join(value) if isinstance(value, list) else value}"


def check_languages(teacher, task):
    """The teacher's own task config (in its checkpoint) against this task's: the same languages in the
    same order (they number the language tokens) and the same language token settings."""
    own = task_config(teacher.state)
    if "lang_pairs" not in own:
        logger.warning("teacher %s was trained with --task %s: its language settings cannot be compared; only "
                       "its embedding sizes are checked", teacher.path, own.get("_name"))
        return
    args = task.args
    theirs, where = languages(own)
    if theirs is None:
        logger.warning("teacher %s: its language list (%s) cannot be compared with this run's %s", teacher.path,
                       where, task.langs)
    elif list(theirs) != list(task.langs):
        raise CheckpointError(
            f"teacher {teacher.path!r} numbers its language tokens by {theirs} ({where}), this run by {task.langs}: "
            "the teacher would read one language's token as another's. Pass the teacher's language list, in its "
            "order: --lang-dict FILE (one language a line) or --langs " + ",".join(theirs))
    for name, flag, default in SETTINGS:
        want, have = own.get(name, default), getattr(args, name, default)
        if name == "langtoks_specs":
            want, have = list(want or []), list(have or [])
        if want != have:
            raise CheckpointError(
                f"teacher {teacher.path!r} was trained with {setting(flag, want)}, this run with "
                f"{setting(flag, have)}: the teacher would see other language tokens than it was trained with. Pass the teacher's {flag} "
                "setting.")
    taught = set(pairs(own))
    untaught = [f"{s}-{t}" for s, t in pairs(args) if (s, t) not in taught]
    if untaught:
        logger.warning("teacher %s was not trained on %s (zero-shot for it)", teacher.path, ",".join(untaught))


def language_tokens(task):
    """{language: its token} for the languages of this task's pairs (all present in its dictionary)."""
    langs = {lang for p in pairs(task.args) for lang in p}
    return {lang: get_lang_tok(lang, task.args.lang_tok_style) for lang in sorted(langs)}


def teacher_dictionaries(path, task):
    """The teacher's joint dictionary from --teacher-dict (its data-bin or one dict.txt) with the
    language tokens added as fairseq adds them to the data's, for `Teacher.check_dictionaries`."""
    src, tgt = pairs(task.args)[0]
    files = [os.path.join(path, f"dict.{lang}.txt") for lang in (src, tgt)] if os.path.isdir(path) else [path, path]
    out = []
    for f in files:
        if not os.path.isfile(f):
            raise CheckpointError(f"the teacher's dictionary {f} not found: give the teacher's data-bin or its "
                                  "dict.txt (--teacher-dict)")
        d = Dictionary.load(f)
        augment_dictionary(d, task.langs, task.args.lang_tok_style, task.args.langtoks_specs, task.args.extra_data)
        out.append((d, f"{f} (+ language tokens)"))
    return out


def check_teacher(teacher, task, teacher_dict=None):
    """Language settings, then the embedding rows against the joint dictionary (naming the language tokens
    when they make the difference), then every symbol with `teacher_dict`."""
    check_languages(teacher, task)
    joint = task.source_dictionary
    missing = [tok for tok in language_tokens(task).values() if joint.index(tok) == joint.unk()]
    if missing:  # fairseq adds them itself; a --fixed-dictionary or --source-dict may lack them
        raise CheckpointError(f"the dictionary has no language token {missing[0]}: the language tokens of "
                              "--lang-pairs must be in it (pass --lang-dict or --langs with every language)")
    weights = teacher.weights
    rows = weights["encoder.embed_tokens.weight"].shape[0] if "encoder.embed_tokens.weight" in weights else len(joint)
    n_langs = sum(1 for sym in joint.symbols if sym in {get_lang_tok(lang, task.args.lang_tok_style, spec)
                                                       for lang in task.langs for spec in task.args.langtoks_specs})
    if rows != len(joint):
        words = len(joint) - n_langs
        hint = ("it has no rows for language tokens: it was not trained with translation_multi_simple_epoch on these "
                "languages" if rows == words else
                f"with the data-bin's {words} entries it had {rows - words} added symbols (language tokens): pass "
                "the teacher's own --lang-dict (or --langs) and --langtoks-specs" if rows > words else
                "binarize the data with the teacher's dictionary: fairseq-preprocess --srcdict TEACHER_DICT "
                "--tgtdict TEACHER_DICT")
        raise CheckpointError(
            f"teacher {teacher.path!r} has {rows} embedding rows, but this run's joint dictionary has {len(joint)} "
            f"({words} from the data-bin + {n_langs} language tokens of {task.langs}): {hint}.")
    own = teacher_dict and teacher_dictionaries(teacher_dict, task)
    names = ["this run's joint dictionary (source side)", "this run's joint dictionary (target side)"]
    teacher.check_dictionaries(task.source_dictionary, task.target_dictionary, names=names, teacher_dicts=own)


def joint_dictionary(data, task_cfg):
    """The dictionary a multilingual model's embeddings index: the data-bin's joint one with fairseq's
    language tokens added, in the order its task adds them (for CTranslate2, which knows no languages)."""
    src, _ = pairs(task_cfg)[0]
    path = os.path.join(data, f"dict.{src}.txt")
    if not os.path.isfile(path):
        raise CheckpointError(f"no {path}: pass --data, the multilingual data-bin the model was trained on")
    langs, where = languages(task_cfg)
    if langs is None:
        raise CheckpointError(f"the model numbers its language tokens by {where}: copy that file here or pass "
                              "the data-bin that holds it")
    if task_cfg.get("lang_tok_replacing_bos_eos"):
        raise CheckpointError("--lang-tok-replacing-bos-eos models cannot be converted (CTranslate2 keeps </s> as "
                              "the first decoder token); retrain without it")
    d = Dictionary.load(path)
    augment_dictionary(d, langs, task_cfg.get("lang_tok_style") or "multilingual",
                       task_cfg.get("langtoks_specs") or ["main"], task_cfg.get("extra_data"))
    return d


def prefixes(settings, src, tgt):
    """(the tokens before a source sentence, the forced first target tokens) of pair src-tgt, as fairseq's
    data manager and its inference_step add them (`main` language tokens). `settings`: the task's
    lang_tok_style, encoder_langtok and decoder_langtok."""
    style = settings.get("lang_tok_style") or "multilingual"
    enc = settings.get("encoder_langtok")
    source = [get_lang_tok(src if enc.startswith("src") else tgt, style, enc)] if enc else []
    return source, [get_lang_tok(tgt, style, "tgt")] if settings.get("decoder_langtok") else []


def token_settings(task_cfg):
    """What decoding needs of a multilingual task to add the language tokens (see `prefixes`)."""
    return {"lang_pairs": [f"{s}-{t}" for s, t in pairs(task_cfg)],
            "lang_tok_style": option(task_cfg, "lang_tok_style") or "multilingual",
            "encoder_langtok": option(task_cfg, "encoder_langtok"),
            "decoder_langtok": bool(option(task_cfg, "decoder_langtok"))}
