"""Offline word-level KD: the teacher's top-K log-probabilities, stored once by
`fairseq-wd-distill-data --save-topk K`, so `logit_kd` trains without running the teacher.

Stored beside the binarized split as two .npy arrays with one row per target token (eos included),
in sentence order: `{split}.{src}-{tgt}.topk_idx.npy` (int32) and `...topk_lprob.npy` (float16).
"""
import os

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset


def topk_paths(folder, split, src, tgt):
    stem = os.path.join(folder, f"{split}.{src}-{tgt}")
    return stem + ".topk_idx.npy", stem + ".topk_lprob.npy"


def has_topk(folder, split, src, tgt):
    return all(os.path.exists(p) for p in topk_paths(folder, split, src, tgt))


class TeacherTopKDataset(BaseWrapperDataset):
    """Adds `teacher_topk_idx` / `teacher_topk_lprob` (B x T x K, aligned with `target`) to batches."""

    def __init__(self, dataset, folder, split, src, tgt, pad):
        super().__init__(dataset)
        idx_path, lprob_path = topk_paths(folder, split, src, tgt)
        self.idx = np.load(idx_path, mmap_mode="r")
        self.lprob = np.load(lprob_path, mmap_mode="r")
        self.offsets = np.concatenate([[0], np.cumsum(dataset.tgt_sizes, dtype=np.int64)])
        if self.offsets[-1] != len(self.idx) or self.idx.shape != self.lprob.shape:
            raise ValueError(
                f"{idx_path} holds {len(self.idx)} target positions but the split has "
                f"{self.offsets[-1]}: the top-K files belong to other data. Re-run fairseq-wd-distill-data."
            )
        self.pad = pad

    def collater(self, samples, **kwargs):
        batch = self.dataset.collater(samples, **kwargs)
        if not batch or "target" not in batch:
            return batch
        bsz, length = batch["target"].shape
        k = self.idx.shape[1]
        idx = torch.full((bsz, length, k), self.pad, dtype=torch.long)
        lprob = torch.zeros((bsz, length, k), dtype=torch.float32)
        for row, sid in enumerate(batch["id"].tolist()):
            start, end = self.offsets[sid], self.offsets[sid + 1]
            idx[row, : end - start] = torch.from_numpy(np.asarray(self.idx[start:end], dtype=np.int64))
            lprob[row, : end - start] = torch.from_numpy(np.asarray(self.lprob[start:end], dtype=np.float32))
        batch["teacher_topk_idx"], batch["teacher_topk_lprob"] = idx, lprob
        return batch
