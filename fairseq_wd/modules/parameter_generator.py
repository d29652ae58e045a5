"""The WD parameter generator: frozen teacher tensors in, student tensors out (see weight_plan).

Teacher tensors of one weight class are stacked once into a non-persistent buffer (never saved in
checkpoints); each student tensor is generated from a view of its group, one tensor at a time, and
contracts the r teacher layers first (sum_l a_l W_O^T T_l W_I = W_O^T (sum_l a_l T_l) W_I), so no
step holds more than one group's intermediate beyond what autograd keeps.

Learned pieces per weight class (shared by all groups of the class with share_transforms, else per
group): W_O, W_I, W_L (r x r), w (r); per student tensor: the element-wise gate W (init 1) and B (0),
or, for a `trainable` tensor (pre-norm final LayerNorm), the tensor itself, initialised to the teacher's.
Inits: `paper` = the released code (xavier-normal W_O, W_I, W_L; w = 1/r); `truncated-identity` =
W_O, W_I identity restricted to the student's width, a = first layer of the group, so the first
student is tanh of a cut-off copy of the teacher.
"""
import hashlib

import torch
import torch.nn as nn


def _name(key):
    return key.replace(".", "__")


class ClassTransform(nn.Module):
    """W_O, W_I, W_L, w for one weight class (or one group of it)."""

    def __init__(self, entry, init):
        super().__init__()
        t, s, r = entry.teacher_shape, entry.shape, len(entry.teacher_keys)
        kind = entry.transform
        identity = init == "truncated-identity"
        if kind in ("matrix", "vector"):
            self.w_out = nn.Parameter(torch.eye(t[0], s[0]) if identity else nn.init.xavier_normal_(torch.empty(t[0], s[0])))
        if kind in ("matrix", "embedding", "projection"):
            self.w_in = nn.Parameter(torch.eye(t[1], s[1]) if identity else nn.init.xavier_normal_(torch.empty(t[1], s[1])))
        if kind in ("matrix", "vector"):
            self.w_layer = nn.Parameter(torch.eye(r) if identity or r == 1 else nn.init.xavier_normal_(torch.empty(r, r)))
            first = torch.zeros(r)
            first[0] = 1.0
            self.w_mix = nn.Parameter(first if identity else torch.full((r,), 1.0 / r))

    def forward(self, kind, group):
        """group: r x (teacher shape). Returns the pre-gate student tensor S'."""
        if kind in ("matrix", "vector"):
            mixed = torch.tensordot(self.w_layer @ self.w_mix, group, dims=1)  # sum_l a_l T_l
            out = self.w_out.t() @ mixed
            return out @ self.w_in if kind == "matrix" else out
        return group[0] @ self.w_in  # embedding / projection: the vocabulary dimension is kept


class ParameterGenerator(nn.Module):
    def __init__(self, plan, teacher_state, share_transforms=True, init="paper"):
        super().__init__()
        if init not in ("paper", "truncated-identity"):
            raise ValueError(f"--wd-init must be paper or truncated-identity, got {init!r}")
        self.plan, self.share_transforms = plan, share_transforms
        self.transforms, self.gates_w, self.gates_b = nn.ModuleDict(), nn.ParameterDict(), nn.ParameterDict()
        self.trainable = nn.ParameterDict()
        self._first_row, stacks = {}, {}  # student tensor -> its group's first row in the class stack
        for e in plan:
            rows = stacks.setdefault(e.weight_class, [])
            self._first_row[e.student_key] = len(rows)
            rows.extend(e.teacher_keys)
            if e.transform in ("matrix", "vector", "embedding", "projection") and self._owner(e) not in self.transforms:
                self.transforms[self._owner(e)] = ClassTransform(e, init)
            if e.transform == "trainable":
                self.trainable[_name(e.student_key)] = nn.Parameter(teacher_state[e.teacher_keys[0]].detach().float().clone())
            elif e.transform not in ("copy", "projection"):
                self.gates_w[_name(e.student_key)] = nn.Parameter(torch.ones(e.shape))
                self.gates_b[_name(e.student_key)] = nn.Parameter(torch.zeros(e.shape))
        digest = hashlib.sha256()
        for cls, keys in stacks.items():
            stacked = torch.stack([teacher_state[k].float() for k in keys])
            self.register_buffer("teacher__" + _name(cls), stacked, persistent=False)
        for k in sorted(teacher_state):
            digest.update(k.encode())
            digest.update(teacher_state[k].float().cpu().numpy().tobytes())
        self.register_buffer("teacher_fingerprint", torch.tensor(list(digest.digest()), dtype=torch.uint8))

    def _owner(self, entry):
        return _name(entry.weight_class if self.share_transforms else entry.student_key)

    def group(self, entry):
        stack = getattr(self, "teacher__" + _name(entry.weight_class))
        start = self._first_row[entry.student_key]
        return stack[start: start + len(entry.teacher_keys)]

    def generate(self, entry):
        group = self.group(entry)
        kind = entry.transform
        if kind == "copy":
            return group[0]
        if kind == "trainable":
            return self.trainable[_name(entry.student_key)]
        pre = group[0] if kind == "elementwise" else self.transforms[self._owner(entry)](kind, group)
        if kind == "projection":
            return pre
        key = _name(entry.student_key)
        return self.gates_w[key] * torch.tanh(pre) + self.gates_b[key]

    def forward(self):
        """{student parameter name: generated tensor}."""
        return {e.student_key: self.generate(e) for e in self.plan}
