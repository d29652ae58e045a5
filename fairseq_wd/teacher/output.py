"""Sequence-level KD data: a teacher's beam output of one split, written as a new binarized data-bin
(`fairseq-wd-distill-data`), optionally with its top-K log-probabilities for offline `logit_kd`.

Sentences stay in their original order with the same dictionaries, so the result trains directly
with `fairseq-train` (the valid/test splits of the source data-bin are copied beside it).

The split is cut into chunks of `chunk_size` sentences; each finished chunk is saved at once, so a
killed run resumes where it stopped. fairseq's --num-shards/--shard-id give chunk c to shard
c % num_shards, for many GPUs or machines sharing one --dest; whichever shard finishes last merges.

Under a multilingual task (translation_multi_simple_epoch or the plugin's tasks over it) every pair of
--lang-pairs (or the one of --source-lang/--target-lang) is decoded with its target language token,
and written as that pair's train.SRC-TGT.* without language tokens, as fairseq-preprocess writes it:
the multilingual task adds them when it reads the data-bin (e.g. as --extra-train-data).
"""
import copy
import glob
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import torch
from fairseq import checkpoint_utils, tasks, utils
from fairseq.data import ConcatDataset, PrependTokenDataset, data_utils, indexed_dataset
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from ..checkpoints import save_whole
from ..datasets.teacher_topk import topk_paths
from ..languages import decoder_langtok, pairs
from ..tasks.teacher_aware import check_teacher
from .checkpoint import Teacher

logger = logging.getLogger("fairseq_wd.distill_data")


class DistillDataError(ValueError):
    """Options or a --dest that would lose or mix data; nothing was decoded."""


def chunk_path(dest, subset, c, pair=None):
    return os.path.join(dest, "chunks", f"{subset}.{pair + '.' if pair else ''}{c:06d}.pt")


def decode_chunk(ids, dataset, task, models, generator, cfg, use_cuda, topk):
    ids = np.array(ids, dtype=np.int64)
    ids = ids[np.argsort(dataset.src_sizes[ids], kind="mergesort")]  # batches of like lengths, as fairseq-generate
    batches = dataset.batch_by_size(
        ids, max_tokens=cfg.dataset.max_tokens,
        max_sentences=cfg.dataset.batch_size or (None if cfg.dataset.max_tokens else 64),
        required_batch_size_multiple=1,
    )
    out = {}
    for batch in batches:
        sample = dataset.collater([dataset[i] for i in batch])
        sample = utils.move_to_cuda(sample) if use_cuda else sample
        hypos = task.inference_step(generator, models, sample)
        tokens = [h[0]["tokens"].int().cpu() for h in hypos]
        scores = teacher_topk_on(models[0], sample, tokens, task, topk) if topk else [None] * len(tokens)
        for sid, tok, sc in zip(sample["id"].tolist(), tokens, scores):
            out[sid] = (tok, sc)
    return out


@torch.no_grad()
def teacher_topk_on(model, sample, hyps, task, k):
    """Teacher-forced top-k log-probs of each hypothesis token (eos included)."""
    pad, eos = task.target_dictionary.pad(), task.target_dictionary.eos()
    device = sample["net_input"]["src_tokens"].device
    prev = data_utils.collate_tokens(hyps, pad, eos, move_eos_to_beginning=True).long().to(device)
    net_output = model(sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"], prev)
    lprobs = model.get_normalized_probs(net_output, log_probs=True).float()
    values, idx = lprobs.topk(k, dim=-1)
    return [(idx[i, : len(h)].int().cpu(), values[i, : len(h)].half().cpu()) for i, h in enumerate(hyps)]


def merge(dest, subset, n_chunks, dataset, task, src, tgt, n_sentences, pair=None, langtok=None):
    """The chunks as the data-bin's split; `langtok`: the decoder language token that starts every
    multilingual hypothesis, and the encoder's prepended to the source, both left out as on disk."""
    results = {}
    for c in range(n_chunks):
        results.update(torch.load(chunk_path(dest, subset, c, pair), weights_only=True))
    missing = sorted(set(range(n_sentences)) - set(results))
    if missing:
        raise RuntimeError(f"{len(missing)} sentences have no teacher output (first ids: {missing[:10]}); "
                           f"delete {os.path.join(dest, 'chunks')} and re-run")
    stem = os.path.join(dest, f"{subset}.{src}-{tgt}")
    sources = dataset.src.dataset if pair and isinstance(dataset.src, PrependTokenDataset) else dataset.src
    hyp = (lambda i: results[i][0][1:] if results[i][0][0] == langtok else results[i][0]) if langtok is not None \
        else (lambda i: results[i][0])
    for lang, d, get in ((src, task.source_dictionary, lambda i: sources[i]), (tgt, task.target_dictionary, hyp)):
        builder = indexed_dataset.make_builder(f"{stem}.{lang}.bin.tmp", impl="mmap", vocab_size=len(d))
        for i in range(n_sentences):
            builder.add_item(torch.as_tensor(get(i)).long())
        builder.finalize(f"{stem}.{lang}.idx")
        os.replace(f"{stem}.{lang}.bin.tmp", f"{stem}.{lang}.bin")
    if results[0][1] is not None:
        idx_path, lprob_path = topk_paths(dest, subset, src, tgt)
        np.save(idx_path, np.concatenate([results[i][1][0].numpy() for i in range(n_sentences)]))
        np.save(lprob_path, np.concatenate([results[i][1][1].numpy() for i in range(n_sentences)]))
    logger.info("wrote %d teacher translations to %s.*", n_sentences, stem)


def copy_dictionaries_and_eval_splits(data, dest, subset):
    for path in glob.glob(os.path.join(data, "dict.*.txt")) + [
        p for p in glob.glob(os.path.join(data, "*.bin")) + glob.glob(os.path.join(data, "*.idx"))
        if not os.path.basename(p).startswith(subset + ".")
    ]:
        target = os.path.join(dest, os.path.basename(path))
        if not os.path.exists(target):  # copied aside and renamed: a file that exists is whole
            shutil.copyfile(path, target + ".tmp")
            os.replace(target + ".tmp", target)


def distill(args):
    """This shard's chunks of --gen-subset decoded by the teacher --path into --dest (fairseq-generate's
    options plus dest, chunk_size, save_topk and teacher_dict); the data-bin written once all are done.
    A multilingual task: every pair in turn (each one a bilingual run with its language tokens)."""
    if args.path is None:
        raise DistillDataError("--path TEACHER.pt is required")
    if not 0 <= args.shard_id < args.num_shards:  # fairseq's own --num-shards/--shard-id
        raise DistillDataError(f"--shard-id must be in [0, {args.num_shards})")
    if not issubclass(tasks.TASK_REGISTRY[args.task], TranslationMultiSimpleEpochTask):
        distill_pair(args)
        return
    if args.save_topk:
        raise DistillDataError("--save-topk: offline top-K KD is for bilingual data (--task distillation); a "
                               "multilingual student trains with the online teacher (--teacher-path) instead")
    if args.lang_tok_replacing_bos_eos:
        raise DistillDataError("--lang-tok-replacing-bos-eos is not supported: its data-bin would need the "
                               "language tokens written in place of <s>/</s>")
    if args.lang_pairs is None:
        raise DistillDataError("--lang-pairs is required: the pairs to decode")
    todo = [(args.source_lang, args.target_lang)] if args.source_lang and args.target_lang else pairs(args)
    loaded = {}  # the teacher, read and built once for all pairs
    for src, tgt in todo:  # fairseq's task reads one pair at inference: set up once per pair
        one = copy.deepcopy(args)
        one.source_lang, one.target_lang = src, tgt
        distill_pair(one, f"{src}-{tgt}", loaded)


def distill_pair(args, pair=None, loaded=None):
    """One language pair's split (`pair`: its name under a multilingual task, else None); `loaded` keeps
    the teacher and its models between the pairs of one run."""
    loaded = {} if loaded is None else loaded
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    subset = cfg.dataset.gen_subset

    task = tasks.setup_task(cfg.task)
    options = task.cfg if pair is None else task.args
    src, tgt = options.source_lang, options.target_lang
    if "teacher" not in loaded:
        loaded["teacher"] = Teacher(args.path)
    check_teacher(loaded["teacher"], task, args.teacher_dict)
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    langtok = None
    if pair is not None:  # the multilingual task's one LanguagePairDataset, with its decoder language token
        dataset = dataset.datasets[0] if isinstance(dataset, ConcatDataset) and len(dataset.datasets) == 1 else dataset
        langtok = decoder_langtok(task, tgt)
    existing = os.path.join(args.dest, f"{subset}.{src}-{tgt}.{tgt}.bin")
    if os.path.realpath(args.dest) == os.path.realpath(utils.split_paths(options.data)[0]):
        raise DistillDataError("--dest must differ from the input data-bin (its split would be overwritten)")
    if os.path.exists(existing) and not os.path.isdir(os.path.join(args.dest, "chunks")):
        raise DistillDataError(f"{existing} exists and was not written by this tool; choose another --dest")
    n = len(dataset)
    n_chunks = (n + args.chunk_size - 1) // args.chunk_size
    os.makedirs(os.path.join(args.dest, "chunks"), exist_ok=True)
    with tempfile.TemporaryFile(dir=args.dest):  # a read-only --dest fails here, before the teacher decodes
        pass
    mine = [c for c in range(n_chunks) if c % args.num_shards == args.shard_id]
    todo = [c for c in mine if not os.path.exists(chunk_path(args.dest, subset, c, pair))]
    logger.info("%s%s: %d sentences, %d chunks; shard %d/%d has %d, %d already done", subset, f" {pair}" if pair
                else "", n, n_chunks, args.shard_id, args.num_shards, len(mine), len(mine) - len(todo))

    if todo and "models" not in loaded:
        loaded["models"], _ = checkpoint_utils.load_model_ensemble(utils.split_paths(args.path), task=task)
        for m in loaded["models"]:
            m.eval()
            if cfg.common.fp16:
                m.half()
            if use_cuda:
                m.cuda()
    if todo:
        models = loaded["models"]
        generator = task.build_generator(models, cfg.generation)
        start, decoded = time.time(), 0
        for done, c in enumerate(todo, 1):
            ids = list(range(c * args.chunk_size, min(n, (c + 1) * args.chunk_size)))
            result = decode_chunk(ids, dataset, task, models, generator, cfg, use_cuda, args.save_topk)
            save_whole(result, chunk_path(args.dest, subset, c, pair))
            decoded += len(ids)
            logger.info("chunk %d done (%d/%d of this shard, %.1f sentences/s)", c, done, len(todo),
                        decoded / (time.time() - start))

    if all(os.path.exists(chunk_path(args.dest, subset, c, pair)) for c in range(n_chunks)):
        merge(args.dest, subset, n_chunks, dataset, task, src, tgt, n, pair, langtok)
        copy_dictionaries_and_eval_splits(utils.split_paths(options.data)[0], args.dest, subset)
    else:
        logger.info("other shards still running; the last one to finish writes the data-bin")
