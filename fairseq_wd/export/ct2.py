"""CTranslate2 (pip `ctranslate2`, the `deploy` extra): converting students and decoding with them.

CTranslate2's FairseqConverter knows only fairseq's own model names and loads weights-only; our
checkpoints keep `wd_*` archs and a Namespace config. So the model is handed over as the student a user
ships (checkpoints.plain_checkpoint): a plain `transformer`, whose model config the converter reads.
"""
import filecmp
import json
import os
import shutil
import tempfile
import time

import torch

from ..checkpoints import output_error, plain_checkpoint

VMAP = "vmap.txt"  # the shortlist CTranslate2 reads from a model folder
# a multilingual model's language token settings (languages.token_settings), which CTranslate2 does not keep
LANGUAGES = "languages.json"
QUANTIZATIONS = ("int8", "int8_float16", "int8_float32", "float16", "float32", "none")
# ctranslate2.Translator(compute_type=...): the type the weights are converted to on load and computed in
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float32",
                 "float16", "bfloat16")


class DeployError(RuntimeError):
    pass


def require():
    try:
        import ctranslate2
    except ImportError as e:
        raise DeployError("CTranslate2 is not installed: pip install 'fairseq-wd[deploy]' "
                          "(or pip install ctranslate2)") from e
    return ctranslate2


def is_model_dir(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.bin"))


def convert(model_state, args, data, source_lang, target_lang, output_dir, quantization="int8", vmap=None,
            languages=None):
    """Writes a CTranslate2 model folder, aside and then renamed: a folder that exists is complete.
    `args`: the model's Namespace (any registered arch); `vmap`: a shortlist (checked already) that the
    converter copies in as vmap.txt, for translate_batch(use_vmap=True); `languages`: a multilingual
    model's language token settings, kept as languages.json for `translate`."""
    ctranslate2 = require()
    if os.path.exists(output_dir):
        raise DeployError(f"{output_dir} exists; choose another --output")
    for lang in (source_lang, target_lang):
        if not os.path.isfile(os.path.join(data, f"dict.{lang}.txt")):
            raise DeployError(f"no dict.{lang}.txt in {data}: pass --data, the data-bin the model was trained on")
    # the student a user ships (checkpoints.plain_checkpoint), which the converter loads weights-only
    task = {"_name": "translation", "data": data, "source_lang": source_lang, "target_lang": target_lang}
    partial = output_dir.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed run
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.pt")
            with open(path, "wb") as f:  # a file object: a failed write raises the system's reason
                torch.save(plain_checkpoint(model_state, args, task), f)
            converter = ctranslate2.converters.FairseqConverter(path, data, source_lang=source_lang,
                                                                 target_lang=target_lang)
            converter.convert(partial, vmap=vmap, quantization=None if quantization == "none" else quantization)
        if languages:
            with open(os.path.join(partial, LANGUAGES), "w") as f:
                json.dump(languages, f, indent=1)
        os.rename(partial, output_dir)
    except Exception as e:
        shutil.rmtree(partial, ignore_errors=True)
        error = output_error(output_dir, e)
        if error is None:
            raise
        raise error from e
    return output_dir


def with_vmap(model_dir, vmap, dest):
    """A folder that decodes `model_dir` with the shortlist `vmap` (CTranslate2 reads only `vmap.txt` inside
    the model folder): `model_dir` itself when it holds that very file, else `dest`, made anew, with links
    to the model's files and a copy of `vmap` (no copy of the weights)."""
    inside = os.path.join(model_dir, VMAP)
    if os.path.isfile(inside) and filecmp.cmp(inside, vmap, shallow=False):
        return model_dir
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for name in os.listdir(model_dir):
        if name != VMAP:
            os.symlink(os.path.abspath(os.path.join(model_dir, name)), os.path.join(dest, name))
    shutil.copyfile(vmap, os.path.join(dest, VMAP))
    return dest


def languages(model_dir):
    """A multilingual model folder's language token settings (see convert), else None."""
    path = os.path.join(model_dir, LANGUAGES)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def translate(model_dir, sources, batches, beam, lenpen, threads, device="cpu", max_len_a=0, max_len_b=200, min_len=1,
              use_vmap=False, source_prefix=(), target_prefix=(), compute_type="default"):
    """(output token lists in the order of `sources`, seconds of each batch, seconds of the warm-up),
    decoded batch by batch as fairseq-generate does, so that its length limits mean the same: `batches`
    lists indices into `sources` (fairseq's, longest last), and a batch's output may hold
    int(a * (longest source + </s>) + b) tokens, as fairseq's max_len_a/b. CTranslate2 counts
    max/min_decoding_length in output tokens without </s>, as fairseq's limits are. The model is loaded,
    every batch's token lists and limits built, and the first batch translated once (the warm-up, as
    fairseq-wd-bench's fairseq rows), before the clock, which times the translate_batch calls only.
    `use_vmap`: each batch decodes over the candidates of the folder's vmap.txt (the union over the batch).
    `source_prefix`, `target_prefix`: a multilingual model's language tokens, put before every source and
    forced as the first output tokens (which the outputs keep, as fairseq's hypotheses do).
    `compute_type`: CTranslate2's (COMPUTE_TYPES), the weights converted to it on load: float32 on an int8
    folder computes in float32 with the int8-rounded weights; default keeps the type the folder was saved in."""
    ctranslate2 = require()
    if use_vmap and not os.path.isfile(os.path.join(model_dir, VMAP)):
        raise DeployError(f"use_vmap: no {VMAP} in {model_dir} (fairseq-wd-export --vmap, or copy it in)")
    translator = ctranslate2.Translator(model_dir, device=device, intra_threads=threads, inter_threads=1,
                                        compute_type=compute_type)
    outputs, seconds = [None] * len(sources), []
    prepared = [dict(source=[[*source_prefix, *sources[i]] for i in batch], max_batch_size=len(batch),
                     # fairseq counts the longest source with its </s>
                     max_decoding_length=int(max_len_a * (max(len(sources[i]) for i in batch) + len(source_prefix) + 1)
                                             + max_len_b),
                     target_prefix=[list(target_prefix)] * len(batch) if target_prefix else None) for batch in batches]

    def decode(inputs):
        return translator.translate_batch(**inputs, beam_size=beam, length_penalty=lenpen,
                                          min_decoding_length=min_len, use_vmap=use_vmap)

    start = time.perf_counter()
    decode(prepared[0])
    warmup = time.perf_counter() - start
    for batch, inputs in zip(batches, prepared):
        start = time.perf_counter()
        results = decode(inputs)
        seconds.append(time.perf_counter() - start)
        for i, r in zip(batch, results):
            outputs[i] = r.hypotheses[0]
    return outputs, seconds, warmup
