"""Weight grouping (WD, Lin et al. 2021): which teacher tensors generate each student tensor, and how.

A tensor's weight class is its name without the layer index (`decoder.layers.fc1.weight`). Student
layer i of a stack of depth L_s takes teacher layers [i*r, (i+1)*r), r = L_t / L_s, in both encoder
and decoder (so a 48-layer encoder compresses to 6 in groups of 8; the released code could not).

Transforms (docs/methods.md#weight-distillation):
- `elementwise`  same shape and one teacher instance: S = W * tanh(T) + B (the released encoder path);
- `matrix`       S = W * tanh(sum_l a_l W_O^T T_l W_I) + B, W_O: O_t x O_s, W_I: I_t x I_s;
- `vector`       biases and LayerNorm: s = W * tanh(sum_l a_l W_O^T t_l) + B;
- `embedding`    token embeddings of another width: S = W * tanh(E_t W_I) + B (rows are the vocabulary);
- `projection`   the output projection of another width: S = E_t W_I (no tanh, no gate);
- `copy`         the output projection at the teacher's width: the frozen teacher matrix, as released;
- `trainable`    a pre-norm model's final LayerNorm at the teacher's width: a trainable copy of the
                 teacher's (the released code; a narrower decoder's takes the `vector` path).
"""
import re
from dataclasses import dataclass
from typing import List, Tuple

LAYER = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)$")
FINAL_LAYER_NORM = re.compile(r"^(encoder|decoder)\.layer_norm\.(weight|bias)$")


class PlanError(ValueError):
    pass


@dataclass
class PlanEntry:
    student_key: str
    shape: Tuple[int, ...]
    weight_class: str
    teacher_keys: List[str]
    teacher_shape: Tuple[int, ...]
    transform: str

    def __str__(self):
        layers = [k.split(".")[2] for k in self.teacher_keys if LAYER.match(k)]
        source = f"teacher layers {','.join(layers)}" if layers else self.teacher_keys[0]
        return (f"{self.student_key:48s} {str(tuple(self.shape)):14s} <- {self.transform:11s} "
                f"{source} {tuple(self.teacher_shape)}")


def depth(keys, stack):
    return 1 + max((int(m.group(2)) for m in map(LAYER.match, keys) if m and m.group(1) == stack), default=-1)


def _transform(key, s_shape, t_shape, r):
    if key.endswith("output_projection.weight"):
        return "copy" if s_shape == t_shape else "projection"
    if FINAL_LAYER_NORM.match(key) and s_shape == t_shape:
        return "trainable"
    if "embed" in key and len(s_shape) == 2:  # token or learned position embeddings, not layernorm_embedding
        return "elementwise" if s_shape == t_shape else "embedding"
    if s_shape == t_shape and r == 1:
        return "elementwise"
    return "matrix" if len(s_shape) == 2 else "vector"


def build_plan(student_shapes, teacher_shapes):
    """student_shapes / teacher_shapes: {parameter name: shape}. Returns [PlanEntry] in student order."""
    ratios = {}
    for stack in ("encoder", "decoder"):
        l_s, l_t = depth(student_shapes, stack), depth(teacher_shapes, stack)
        if l_s and (l_t % l_s):
            raise PlanError(f"the teacher {stack} has {l_t} layers and the student {l_s}: weight grouping needs "
                            f"the teacher depth to be a multiple of the student's (e.g. {l_t} -> "
                            f"{', '.join(str(d) for d in range(1, l_t + 1) if l_t % d == 0)})")
        ratios[stack] = l_t // l_s if l_s else 0
    plan = []
    for key, s_shape in student_shapes.items():
        m = LAYER.match(key)
        if m:
            stack, i, rest = m.group(1), int(m.group(2)), m.group(3)
            r = ratios[stack]
            t_keys = [f"{stack}.layers.{j}.{rest}" for j in range(i * r, (i + 1) * r)]
            weight_class = f"{stack}.layers.{rest}"
        else:
            r, t_keys, weight_class = 1, [key], key
        missing = [k for k in t_keys if k not in teacher_shapes]
        if missing:
            raise PlanError(f"student tensor {key} has no teacher counterpart {missing[0]}: teacher and student "
                            f"must both be fairseq transformers of the same kind (pre-/post-norm, same options)")
        t_shape = tuple(teacher_shapes[t_keys[0]])
        if len(t_shape) != len(s_shape):
            raise PlanError(f"{key}: teacher tensor has {len(t_shape)} dimensions, student {len(s_shape)}")
        plan.append(PlanEntry(key, tuple(s_shape), weight_class, t_keys, t_shape,
                              _transform(key, tuple(s_shape), t_shape, r)))
    return plan


def format_plan(plan):
    return "\n".join(str(e) for e in plan)
