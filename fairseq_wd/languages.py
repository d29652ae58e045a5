"""What the plugin needs of fairseq's `translation_multi_simple_epoch` (NLLB-200, M2M-100, IndicTrans2
teachers). `Languages` is the one place where a multilingual task's dictionaries and language tokens are
made, by fairseq's own `MultilingualDatasetManager` from the task's options (--fixed-dictionary,
--source-dict/--target-dict or the data-bin's dict.LANG.txt; --lang-dict or --langs; --langtoks,
--encoder-langtok, --decoder-langtok, --langtoks-specs, --lang-tok-style): the CTranslate2 export, the
bench's language tokens and the teacher checks all read them from it. A teacher is checked against its
language settings, since a teacher trained with other language token ids reads the data's tokens as other
languages without any error of fairseq's."""
import argparse
import copy
import json
import logging
import os

from fairseq.data.multilingual.multilingual_data_manager import MultilingualDatasetManager
from fairseq.data.multilingual.multilingual_utils import get_lang_tok
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from .checkpoints import CheckpointError, task_config
from .teacher.checkpoint import first_difference

logger = logging.getLogger(__name__)

# language settings a teacher and its student must share besides the language list and the language tokens
# of the main data: (option, command-line flag, fairseq's default)
SETTINGS = (("lang_tok_style", "--lang-tok-style", "multilingual"),
            ("lang_tok_replacing_bos_eos", "--lang-tok-replacing-bos-eos", False),
            ("langtoks_specs", "--langtoks-specs", ["main"]))
# the options that say which files the dictionaries are read from
DICTIONARY_FILES = (("fixed_dictionary", "--fixed-dictionary"), ("source_dict", "--source-dict"),
                    ("target_dict", "--target-dict"), ("lang_dict", "--lang-dict"))
# what a student repeats of its teacher's task options: (option, flag, kind)
TEACHER_OPTIONS = (("lang_dict", "--lang-dict", "path"), ("langs", "--langs", "list"),
                   ("fixed_dictionary", "--fixed-dictionary", "path"), ("source_dict", "--source-dict", "path"),
                   ("target_dict", "--target-dict", "path"), ("lang_tok_style", "--lang-tok-style", "str"),
                   ("langtoks_specs", "--langtoks-specs", "list"), ("langtoks", "--langtoks", "dict"),
                   ("encoder_langtok", "--encoder-langtok", "str"), ("decoder_langtok", "--decoder-langtok", "switch"),
                   ("lang_tok_replacing_bos_eos", "--lang-tok-replacing-bos-eos", "switch"),
                   ("enable_lang_ids", "--enable-lang-ids", "switch"))


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


def main_langtoks(cfg):
    """(source spec, target spec) of the main data's language tokens, as MultilingualDatasetManager.prepare
    derives them: --langtoks' "main" entry, else --encoder-langtok and --decoder-langtok."""
    given = option(cfg, "langtoks") or {}
    if "main" in given:
        return tuple(given["main"])
    return option(cfg, "encoder_langtok") or None, "tgt" if option(cfg, "decoder_langtok") else None


def describe_langtoks(spec):
    enc, dec = spec
    if enc in (None, "src", "tgt") and dec in (None, "tgt"):
        return (f"--encoder-langtok {enc}" if enc else "no --encoder-langtok") + (
            " --decoder-langtok" if dec else " and no --decoder-langtok")
    return "--langtoks " + json.dumps({"main": list(spec)})


def task_args(task_cfg, data=None):
    """translation_multi_simple_epoch's arguments with fairseq's defaults, the values of `task_cfg` (a
    checkpoint's task config as a dict, or parsed args) over them, `data` in place of its data-bin, and no
    -s/-t (every pair's dictionaries, as in training)."""
    parser = argparse.ArgumentParser(add_help=False)
    TranslationMultiSimpleEpochTask.add_args(parser)
    args = parser.parse_args([data or ""])
    for k, v in (task_cfg if isinstance(task_cfg, dict) else vars(task_cfg)).items():
        setattr(args, k, copy.deepcopy(v))
    if data:
        args.data = data
    if isinstance(args.lang_pairs, str):
        args.lang_pairs = args.lang_pairs.split(",")
    args.lang_pairs = list(args.lang_pairs or [])
    args.langtoks = dict(args.langtoks or {})
    args.source_lang = args.target_lang = None
    if getattr(args, "seed", None) is None:
        args.seed = 1
    return args


class Languages:
    """A multilingual task's languages, dictionaries and language tokens exactly as fairseq's
    translation_multi_simple_epoch makes them: MultilingualDatasetManager.prepare (load_langs,
    load_all_dictionaries with the language tokens added) and its get_encoder_langtok /
    get_decoder_langtok (get_langtok_index) on the task's options.

    `task_cfg`: a checkpoint's task config (a dict) or parsed args; `data`: a data-bin in place of the
    config's. A file the options name (--fixed-dictionary, --source-dict, --target-dict, --lang-dict) that
    is not at its path is looked for under `data` by its file name, as CTranslate2's converter looks for
    --lang-dict; `where` names the options in errors."""

    def __init__(self, task_cfg, data=None, where="the task options"):
        args = task_args(task_cfg, data)
        if not args.lang_pairs:
            raise CheckpointError(f"{where} have no --lang-pairs: not a translation_multi_simple_epoch task")
        folder = (args.data or "").split(os.pathsep)[0]
        for name, flag in DICTIONARY_FILES:
            if getattr(args, name):
                setattr(args, name, located(getattr(args, name), folder, flag, where))
        if not args.fixed_dictionary:
            sides = [lang for p in pairs(args) for lang, given in zip(p, (args.source_dict, args.target_dict))
                     if not given]
            missing = sorted({f for f in (os.path.join(folder, f"dict.{lang}.txt") for lang in sides)
                              if not os.path.isfile(f)})
            if missing:
                raise CheckpointError(f"no {missing[0]} ({where} read the data-bin's dictionaries, having no "
                                      "--fixed-dictionary): give the data-bin the model was trained on, or its "
                                      "--fixed-dictionary")
        try:
            langs, dicts, _ = MultilingualDatasetManager.prepare(TranslationMultiSimpleEpochTask.load_dictionary,
                                                                 args)
        except ValueError as e:  # a pair's language not in --lang-dict / --langs
            raise CheckpointError(f"{where}: {e}") from None
        self.args, self.langs, self.where = args, langs, where
        self.pairs = pairs(args)
        self.manager = MultilingualDatasetManager.setup_data_manager(args, args.lang_pairs, langs, dicts, None)
        self.source_dictionary = self.manager.get_source_dictionary(self.pairs[0][0])  # as the task's properties
        self.target_dictionary = self.manager.get_target_dictionary(self.pairs[0][1])
        self.specs = tuple(args.langtoks["main"])

    def prefix_ids(self, src, tgt):
        """(the source's language token ids, the forced first target ids) of pair src-tgt: the token
        PrependTokenDataset puts before its sources and the one inference_step forces (none where the
        --langtoks spec is None)."""
        try:
            enc = self.manager.get_encoder_langtok(src, tgt, self.specs[0])
            dec = self.manager.get_decoder_langtok(tgt, self.specs[1])
        except AssertionError as e:  # get_langtok_index: the token is not in the dictionary
            raise CheckpointError(f"{self.where}: {e}: pass --lang-dict or --langs with every language") from None
        return [] if enc is None else [enc], [] if dec is None else [dec]

    def prefixes(self, src, tgt):
        """`prefix_ids` as symbols."""
        source, target = self.prefix_ids(src, tgt)
        return [self.source_dictionary[i] for i in source], [self.target_dictionary[i] for i in target]

    def token_settings(self):
        """What decoding needs to add the language tokens of every pair (`prefixes`), JSON-ready."""
        return {"lang_pairs": [f"{s}-{t}" for s, t in self.pairs], "lang_tok_style": self.args.lang_tok_style,
                "langtoks": {"main": list(self.specs)},
                "prefixes": {f"{s}-{t}": [list(p) for p in self.prefixes(s, t)] for s, t in self.pairs}}


def located(path, data, flag, where):
    """`path`, else the file of that name in the data-bin folder `data` (as Languages looks for it)."""
    if os.path.isfile(path):
        return os.path.abspath(path)
    folder = (data or "").split(os.pathsep)[0]
    moved = os.path.join(folder, os.path.basename(path)) if folder else None
    if not (moved and os.path.isfile(moved)):
        raise CheckpointError(f"{flag} {path} ({where}): no such file, nor {moved}: put the file at that path or "
                              "into the data-bin folder")
    return os.path.abspath(moved)


def teacher_flags(task_cfg, data):
    """fairseq flags that repeat a multilingual teacher's language options (its checkpoint's task config):
    its language list, dictionary files (absolute paths; found as `located` finds them), language token
    options; its --lang-pairs are not among them."""
    if "lang_pairs" not in task_cfg:
        raise CheckpointError(f"the teacher was trained with --task {task_cfg.get('_name')}, not "
                              "translation_multi_simple_epoch: a multilingual run needs a multilingual teacher")
    flags = []
    for name, flag, kind in TEACHER_OPTIONS:
        value = task_cfg.get(name)
        if value is None or value is False or value == {} or value == []:
            continue
        if kind == "path":
            flags += [flag, located(value, data, flag, "the teacher's checkpoint")]
        elif kind == "list":
            flags += [flag, value if isinstance(value, str) else ",".join(value)]
        elif kind == "dict":
            flags += [flag, repr({k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})]
        elif kind == "switch":
            flags.append(flag)
        else:
            flags += [flag, str(value)]
    return flags


def check_data_dictionaries(task, data):
    """The data-bin's dict.LANG.txt of every pair's languages are the start of the task's dictionaries,
    symbol by symbol, so that the ids on disk mean the same words to the task (its --fixed-dictionary may
    add entries after them, as M2M-100's model dictionary does after its data dictionary)."""
    from fairseq.data import Dictionary

    for src, tgt in pairs(task.args):
        for lang, dictionary in ((src, task.source_dictionary), (tgt, task.target_dictionary)):
            path = os.path.join(data, f"dict.{lang}.txt")
            if not os.path.isfile(path):
                raise CheckpointError(f"no {path}: binarize every pair with fairseq-preprocess --srcdict "
                                      "TEACHER_DICT --tgtdict TEACHER_DICT")
            own = Dictionary.load(path).symbols
            i = first_difference(own, dictionary.symbols[:len(own)])
            if i is not None or len(own) > len(dictionary):
                i = len(dictionary) if i is None else i
                raise CheckpointError(
                    f"{path} is not the teacher's dictionary: entry {i} is {own[i]!r} in the data but "
                    f"{dictionary.symbols[i] if i < len(dictionary) else 'nothing'!r} for the teacher, so it would "
                    "read the data's tokens as other words. Binarize the data with the teacher's dictionary: "
                    "fairseq-preprocess --srcdict TEACHER_DICT --tgtdict TEACHER_DICT")


def decoder_langtok(task, tgt):
    """The id of the target language token that a set-up multilingual `task` forces as the first output
    token for target language `tgt` (None where its --langtoks spec has none), from the task's own data
    manager."""
    return task.data_manager.get_decoder_langtok(tgt, task.args.langtoks["main"][1])


def token_settings(task_cfg, data=None):
    """`Languages.token_settings` of a task's parsed args or saved config (its data-bin, or `data`)."""
    return Languages(task_cfg, data).token_settings()


def prefixes(settings, src, tgt):
    """(the tokens before a source sentence, the forced first target tokens) of pair src-tgt from
    `token_settings`: fairseq's own, as its data manager adds them to the data and its inference_step
    forces them."""
    found = (settings.get("prefixes") or {}).get(f"{src}-{tgt}")
    if found is None:
        raise CheckpointError(f"no language tokens for {src}-{tgt} in these language settings (pairs "
                              f"{', '.join(settings.get('lang_pairs') or [])}): export the model with fairseq-wd-export "
                              "and give the pair in --lang-pairs")
    return list(found[0]), list(found[1])


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
    same order (they number the language tokens), the same main language tokens and the same settings.
    False where the teacher was not trained with a multilingual task (nothing to compare)."""
    own = task_config(teacher.state)
    if "lang_pairs" not in own:
        logger.warning("teacher %s was trained with --task %s: its language settings cannot be compared; only "
                       "its embedding sizes are checked", teacher.path, own.get("_name"))
        return False
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
    want, have = main_langtoks(own), main_langtoks(args)
    if want != have:
        raise CheckpointError(
            f"teacher {teacher.path!r} was trained with {describe_langtoks(want)}, this run with "
            f"{describe_langtoks(have)}: the teacher would see other language tokens than it was trained with. Pass "
            "the teacher's language token options.")
    for name, flag, default in SETTINGS:
        want, have = own.get(name, default), getattr(args, name, default)
        if name == "langtoks_specs":
            want, have = list(want or []), list(have or [])
        if want != have:
            raise CheckpointError(
                f"teacher {teacher.path!r} was trained with {setting(flag, want)}, this run with "
                f"{setting(flag, have)}: the teacher would see other language tokens than it was trained with. Pass "
                f"the teacher's {flag} setting.")
    taught = set(pairs(own))
    untaught = [f"{s}-{t}" for s, t in pairs(args) if (s, t) not in taught]
    if untaught:
        logger.warning("teacher %s was not trained on %s (zero-shot for it)", teacher.path, ",".join(untaught))
    return True


def with_dictionaries(task, **files):
    """This task's options with other dictionary files (fixed_dictionary, source_dict, target_dict, data)."""
    cfg = dict(vars(task.args))
    cfg.update(fixed_dictionary=None, source_dict=None, target_dict=None)
    cfg.update(files)
    return cfg


def teacher_dictionaries_with_tokens(path, task):
    """The teacher's dictionaries from --teacher-dict (its data-bin, or one dictionary file such as
    M2M-100's --fixed-dictionary) with this task's languages and language tokens added by fairseq's data
    manager, for `Teacher.check_dictionaries`."""
    if not os.path.exists(path):
        raise CheckpointError(f"--teacher-dict {path} not found: give the teacher's data-bin or its dictionary "
                              "file (M2M-100, NLLB: its --fixed-dictionary)")
    cfg = with_dictionaries(task, data=path) if os.path.isdir(path) else with_dictionaries(task, fixed_dictionary=path)
    own = Languages(cfg, where=f"--teacher-dict {path}")
    return [(own.source_dictionary, f"{path} (+ language tokens)"), (own.target_dictionary, f"{path} (+ language tokens)")]


def own_dictionaries(teacher, task):
    """The teacher's dictionaries from its own checkpoint's dictionary options (its --fixed-dictionary, or
    --source-dict/--target-dict, or its data-bin's dict.LANG.txt) with this task's languages, where those
    files are on this machine; else None."""
    own = task_config(teacher.state)
    files = {k: own.get(k) for k in ("fixed_dictionary", "source_dict", "target_dict")}
    try:
        found = Languages(with_dictionaries(task, data=own.get("data"), **files),
                          where=f"teacher {teacher.path!r}'s own options")
    except CheckpointError as e:
        logger.info("teacher %s: its own dictionaries are not compared (%s)", teacher.path, e)
        return None
    name = files["fixed_dictionary"] or files["source_dict"] or own.get("data")
    return [(found.source_dictionary, f"the teacher's own {name} (+ language tokens)"),
            (found.target_dictionary, f"the teacher's own {files['target_dict'] or name} (+ language tokens)")]


def check_teacher(teacher, task, teacher_dict=None):
    """Language settings; the language token of every pair in the dictionaries (fairseq's
    get_langtok_index); the embedding rows against the task's dictionaries (naming the language tokens when
    they make the difference); then every symbol against the teacher's own dictionaries: `teacher_dict`'s,
    else those its checkpoint names where they are on this machine."""
    multilingual = check_languages(teacher, task)
    for src, tgt in (p.split("-") for p in task.lang_pairs):  # the pairs it reads (one at inference)
        try:
            task.data_manager.get_encoder_langtok(src, tgt, main_langtoks(task.args)[0])
            task.data_manager.get_decoder_langtok(tgt, main_langtoks(task.args)[1])
        except AssertionError as e:  # a --fixed-dictionary or --source-dict may lack a language's token
            raise CheckpointError(f"{e}: the language tokens of --lang-pairs must be in the dictionary (pass "
                                  "--lang-dict or --langs with every language)") from None
    joint = task.source_dictionary
    weights = teacher.weights
    rows = weights["encoder.embed_tokens.weight"].shape[0] if "encoder.embed_tokens.weight" in weights else len(joint)
    added = {get_lang_tok(lang, task.args.lang_tok_style, spec) for lang in task.langs for spec in task.args.langtoks_specs}
    n_langs = sum(1 for sym in joint.symbols if sym in added)
    if rows != len(joint):
        words = len(joint) - n_langs
        hint = ("it has no rows for language tokens: it was not trained with translation_multi_simple_epoch on these "
                "languages" if rows == words else
                f"with the dictionary's {words} entries it had {rows - words} added symbols (language tokens): pass "
                "the teacher's own --lang-dict (or --langs) and --langtoks-specs" if rows > words else
                "give the teacher's dictionary (M2M-100, NLLB: its --fixed-dictionary) and binarize the data with "
                "it: fairseq-preprocess --srcdict TEACHER_DICT --tgtdict TEACHER_DICT")
        raise CheckpointError(
            f"teacher {teacher.path!r} has {rows} embedding rows, but this run's dictionary has {len(joint)} "
            f"({words} entries + {n_langs} language tokens of {task.langs}): {hint}.")
    own = (teacher_dictionaries_with_tokens(teacher_dict, task) if teacher_dict else
           own_dictionaries(teacher, task) if multilingual else None)
    names = ["this run's dictionary (source side)", "this run's dictionary (target side)"]
    teacher.check_dictionaries(task.source_dictionary, task.target_dictionary, names=names, teacher_dicts=own)
    return own is not None


def check_vocabulary(name, vocabulary, dictionary):
    """`vocabulary` (a converted model's token list) is `dictionary`'s symbols, in order; CTranslate2 writes
    fairseq's <pad> as <blank>."""
    expected = ["<blank>" if s == "<pad>" else s for s in dictionary.symbols]
    i = first_difference(list(vocabulary), expected)
    if i is not None:
        got = vocabulary[i] if i < len(vocabulary) else "nothing"
        raise CheckpointError(f"{name}: entry {i} is {got!r}, fairseq's dictionary has "
                              f"{expected[i] if i < len(expected) else 'nothing'!r} there ({len(vocabulary)} entries "
                              f"against {len(expected)}): the model would read and write other tokens than fairseq's")
