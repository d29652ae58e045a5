"""`fairseq-wd-distill-data`: the teacher's beam output for a split, as a new binarized data-bin.

Takes every option of `fairseq-generate` (beam, lenpen, batch size, fp16, ...) plus --dest.
Sentences stay in their original order with the same dictionaries, so the result trains directly
with `fairseq-train` (the valid/test splits of the source data-bin are copied beside it).

The split is cut into chunks of --chunk-size sentences; each finished chunk is saved at once, so a
killed run resumes where it stopped. --num-shards/--shard-id give chunk c to shard c % num_shards,
for many GPUs or machines sharing one --dest; whichever shard finishes last merges. With
--save-topk K the teacher's top-K log-probabilities of every target token are stored too, for
offline `logit_kd` (no teacher at training time).
"""
import glob
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

import fairseq_wd  # noqa: F401  (compat fixes)
from fairseq import checkpoint_utils, options, tasks, utils
from fairseq.data import data_utils, indexed_dataset
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from ..checkpoints import DISK_ERRORS, OutputError, save_whole
from ..datasets.teacher_topk import topk_paths
from ..teacher import Teacher

logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, stream=sys.stdout)
logger = logging.getLogger("fairseq_wd.distill_data")


def get_parser():
    parser = options.get_generation_parser()
    group = parser.add_argument_group("distill-data")
    group.add_argument("--dest", required=True, help="output data-bin (created; finished chunks kept there)")
    group.add_argument("--chunk-size", type=int, default=2000, help="sentences per resumable unit of work")
    group.add_argument("--save-topk", type=int, default=0, help="also store the teacher's top-K log-probs per target token")
    return parser


def chunk_path(dest, subset, c):
    return os.path.join(dest, "chunks", f"{subset}.{c:06d}.pt")


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


def merge(dest, subset, n_chunks, dataset, task, src, tgt, n_sentences):
    results = {}
    for c in range(n_chunks):
        results.update(torch.load(chunk_path(dest, subset, c), weights_only=True))
    missing = sorted(set(range(n_sentences)) - set(results))
    if missing:
        raise RuntimeError(f"{len(missing)} sentences have no teacher output (first ids: {missing[:10]}); "
                           f"delete {os.path.join(dest, 'chunks')} and re-run")
    stem = os.path.join(dest, f"{subset}.{src}-{tgt}")
    for lang, d, get in ((src, task.source_dictionary, lambda i: dataset.src[i]),
                         (tgt, task.target_dictionary, lambda i: results[i][0])):
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


def main(argv=None):
    args = options.parse_args_and_arch(get_parser(), argv)
    try:
        distill(args)
    except OutputError as e:
        sys.exit(f"fairseq-wd-distill-data: {e}; finished chunks are kept")
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        sys.exit(f"fairseq-wd-distill-data: {e}. Free disk space or fix the permissions, then rerun: finished "
                 "chunks are kept, the data-bin is written again")


def distill(args):
    if args.path is None:
        sys.exit("fairseq-wd-distill-data: --path TEACHER.pt is required")
    if not 0 <= args.shard_id < args.num_shards:  # fairseq's own --num-shards/--shard-id
        sys.exit(f"fairseq-wd-distill-data: --shard-id must be in [0, {args.num_shards})")
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    subset = cfg.dataset.gen_subset

    task = tasks.setup_task(cfg.task)
    Teacher(args.path).check_dictionaries(task.source_dictionary, task.target_dictionary)
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    existing = os.path.join(args.dest, f"{subset}.{src}-{tgt}.{tgt}.bin")
    if os.path.realpath(args.dest) == os.path.realpath(utils.split_paths(task.cfg.data)[0]):
        sys.exit("fairseq-wd-distill-data: --dest must differ from the input data-bin (its split would be overwritten)")
    if os.path.exists(existing) and not os.path.isdir(os.path.join(args.dest, "chunks")):
        sys.exit(f"fairseq-wd-distill-data: {existing} exists and was not written by this tool; choose another --dest")
    n = len(dataset)
    n_chunks = (n + args.chunk_size - 1) // args.chunk_size
    os.makedirs(os.path.join(args.dest, "chunks"), exist_ok=True)
    with tempfile.TemporaryFile(dir=args.dest):  # a read-only --dest fails here, before the teacher decodes
        pass
    mine = [c for c in range(n_chunks) if c % args.num_shards == args.shard_id]
    todo = [c for c in mine if not os.path.exists(chunk_path(args.dest, subset, c))]
    logger.info("%s: %d sentences, %d chunks; shard %d/%d has %d, %d already done",
                subset, n, n_chunks, args.shard_id, args.num_shards, len(mine), len(mine) - len(todo))

    if todo:
        models, _ = checkpoint_utils.load_model_ensemble(utils.split_paths(args.path), task=task)
        for m in models:
            m.eval()
            if cfg.common.fp16:
                m.half()
            if use_cuda:
                m.cuda()
        generator = task.build_generator(models, cfg.generation)
        start, decoded = time.time(), 0
        for done, c in enumerate(todo, 1):
            ids = list(range(c * args.chunk_size, min(n, (c + 1) * args.chunk_size)))
            result = decode_chunk(ids, dataset, task, models, generator, cfg, use_cuda, args.save_topk)
            save_whole(result, chunk_path(args.dest, subset, c))
            decoded += len(ids)
            logger.info("chunk %d done (%d/%d of this shard, %.1f sentences/s)", c, done, len(todo),
                        decoded / (time.time() - start))

    if all(os.path.exists(chunk_path(args.dest, subset, c)) for c in range(n_chunks)):
        merge(args.dest, subset, n_chunks, dataset, task, src, tgt, n)
        copy_dictionaries_and_eval_splits(task.cfg.data, args.dest, subset)
    else:
        logger.info("other shards still running; the last one to finish writes the data-bin")


if __name__ == "__main__":
    main()
