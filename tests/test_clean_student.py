"""The student a user ships (the pipeline's WORK/students/, fairseq-wd-export's output): one file of weights
and a plain config that vanilla fairseq-fixed (fairseq-generate, fairseq-interactive, the hub interface)
and CTranslate2's own ct2-fairseq-converter load without the plugin, translating as the plugin's
decoders do. The training checkpoint it comes from they cannot load under torch >= 2.6 (a Namespace in
its config, numpy values in its extra state, the plugin's task and arch)."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from utils import BIN, REPO, kd_train, run

from fairseq_wd.bench import decoding, testset
from fairseq_wd.cli.pipeline import get_parser
from fairseq_wd.pipeline.experiment import Pipeline

SETTINGS = decoding.Settings(beam=4, lenpen=1.0, batch_size=8, max_len_a=0, max_len_b=200, min_len=1, threads=1,
                             device="cpu")
FEW = 6  # the sentences the hub interface and fairseq-interactive translate

# Runs in a fresh process that never imports the plugin (nor allow-lists anything for torch.load).
VANILLA = r"""
import json, os, sys
import torch
path, data, sentences = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
state = torch.load(path, map_location="cpu", weights_only=True)

def kinds(value):
    if isinstance(value, dict):
        return {type(value).__name__}.union(*map(kinds, value.values()))
    if isinstance(value, list):
        return {"list"}.union(*map(kinds, value))
    return {type(value).__name__}

from fairseq.models.transformer import TransformerModel
hub = TransformerModel.from_pretrained(os.path.dirname(path), checkpoint_file=os.path.basename(path),
                                       data_name_or_path=data)
hyps = hub.translate(sentences, beam=4)
print(json.dumps({"keys": sorted(state), "config_types": sorted(kinds(state["cfg"])),
                  "model": dict(state["cfg"]["model"]), "attributes": vars(state["cfg"]["model"]),
                  "task": state["cfg"]["task"], "last_optimizer_state": state["last_optimizer_state"],
                  "tensors": all(torch.is_tensor(t) for t in state["model"].values()), "hyps": hyps,
                  "plugin_imported": any(m.startswith("fairseq_wd") for m in sys.modules)}))
"""


def vanilla_env():
    """No PYTHONPATH into the repository, run from elsewhere: the plugin cannot be imported by accident."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def best_hypotheses(stdout):
    """fairseq-generate's / fairseq-interactive's detokenized best hypotheses, {sentence id: text}."""
    best = {}
    for i, text in re.findall(r"^D-(\d+)\t\S+\t(.*)$", stdout, re.M):
        best.setdefault(int(i), text)
    return best


@pytest.fixture(scope="module")
def shipped(data_bin, tmp_path_factory):
    """A TINY student trained as the pipeline trains one (the plugin's distillation task and wd_* arch,
    checkpoint_best.pt chosen by --eval-bleu, which keeps numpy values in its extra state), shipped by the
    pipeline's step: (training checkpoint, WORK/students/tiny_kd_seed1.pt, the step's output)."""
    work = tmp_path_factory.mktemp("work")
    kd_train(data_bin, work / "tiny_kd_seed1", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
             "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--eval-bleu",
             "--validate-interval", "1000", "--validate-interval-updates", "50", "--best-checkpoint-metric", "bleu",
             "--maximize-best-checkpoint-metric", updates=150)
    checkpoint = str(work / "tiny_kd_seed1" / "checkpoint_best.pt")
    pipe = Pipeline(get_parser().parse_args(["--work-dir", str(work), "--data-bin", str(data_bin)]))
    out = pipe.shipped({"teacher": [str(work / "teacher.pt")], "TINY KD": [checkpoint]})
    return checkpoint, str(work / "students" / "tiny_kd_seed1.pt"), out


@pytest.fixture(scope="module")
def plugin_hypotheses(data_bin, shipped):
    """The training checkpoint decoded by the plugin's fairseq decoder (the bench's fairseq rows)."""
    test = testset.TestSet(str(data_bin), "test", "none")
    return test, decoding.FairseqDecoder(shipped[0], SETTINGS).translate(test).hypotheses


def test_pipeline_ships_each_student_once(data_bin, shipped, capsys):
    checkpoint, student, out = shipped
    assert out == {"TINY KD": [student]} and sorted(os.listdir(os.path.dirname(student))) == ["tiny_kd_seed1.pt",
                                                                                        "tiny_kd_seed1.pt.step.json"]
    pipe = Pipeline(get_parser().parse_args(["--work-dir", os.path.dirname(os.path.dirname(student)),
                                             "--data-bin", str(data_bin)]))
    capsys.readouterr()
    assert pipe.shipped({"TINY KD": [checkpoint]}) == {"TINY KD": [student]}
    assert f"done already: {student}" in capsys.readouterr().out


def test_shipped_student_is_weights_and_a_plain_config(data_bin, shipped, plugin_hypotheses, tmp_path):
    """torch.load(weights_only=True) and the hub interface in a process without the plugin; the config
    names fairseq's own `transformer` and `translation`, every dimension explicit; no optimizer state."""
    _, student, _ = shipped
    test, expected = plugin_hypotheses
    proc = subprocess.run([sys.executable, "-c", VANILLA, student, str(data_bin),
                           json.dumps([" ".join(s) for s in test.sources[:FEW]])],
                          capture_output=True, text=True, cwd=tmp_path, env=vanilla_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    assert not got["plugin_imported"]
    assert got["keys"] == ["args", "cfg", "criterion", "extra_state", "last_optimizer_state", "model",
                           "optimizer_history"] and got["last_optimizer_state"] is None and got["tensors"]
    assert set(got["config_types"]) <= {"dict", "OrderedDict", "list", "str", "int", "float", "bool", "NoneType"}
    model, task = got["model"], got["task"]
    assert model == got["attributes"], "ct2-fairseq-converter reads the model config's attributes"
    assert (model["_name"], model["arch"], task["_name"]) == ("transformer", "transformer", "translation")
    assert {k: model[k] for k in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "decoder_layers",
                                  "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads")} == {
        "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "decoder_layers": 1,
        "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64, "decoder_attention_heads": 4}
    assert (task["source_lang"], task["target_lang"], task["data"]) == ("src", "tgt", str(data_bin))
    assert not any("fairseq_wd" in json.dumps(v) or "teacher" in json.dumps(v) for v in (model, task))
    assert got["hyps"] == expected[:FEW], "the hub interface translates as the plugin's fairseq decoder"


def test_fairseq_generate_and_interactive_without_user_dir(data_bin, shipped, plugin_hypotheses, tmp_path):
    _, student, _ = shipped
    test, expected = plugin_hypotheses
    flags = ["--path", student, "--cpu", "--beam", "4", "--batch-size", "8", "--lenpen", "1", "--max-len-a", "0",
             "--max-len-b", "200", "--min-len", "1"]
    # fairseq-fixed's own batching drops a last batch that is not a multiple of 8, which the plugin fixes
    generated = subprocess.run([os.path.join(BIN, "fairseq-generate"), str(data_bin), "--gen-subset", "test",
                                "--required-batch-size-multiple", "1", *flags],
                               capture_output=True, text=True, cwd=tmp_path, env=vanilla_env())
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert "fairseq_wd" not in generated.stderr, "nothing of the plugin was loaded"
    best = best_hypotheses(generated.stdout)
    assert [best.get(i) for i in range(len(test))] == expected
    interactive = subprocess.run([os.path.join(BIN, "fairseq-interactive"), str(data_bin), *flags,
                                  "--buffer-size", "8"],
                                 input="".join(" ".join(s) + "\n" for s in test.sources[:FEW]),
                                 capture_output=True, text=True, cwd=tmp_path, env=vanilla_env())
    assert interactive.returncode == 0, interactive.stderr[-3000:]
    best = best_hypotheses(interactive.stdout)
    assert [best.get(i) for i in range(FEW)] == expected[:FEW]


def test_ct2_fairseq_converter_without_user_dir(data_bin, shipped, plugin_hypotheses, tmp_path):
    """CTranslate2's own converter makes the model the plugin's export makes, and it decodes as the plugin's
    decoders: its CTranslate2 rows and its fairseq rows."""
    checkpoint, student, _ = shipped
    test, expected = plugin_hypotheses
    converted, exported = tmp_path / "converted", tmp_path / "exported"
    proc = subprocess.run([os.path.join(BIN, "ct2-fairseq-converter"), "--model_path", student, "--data_dir",
                           str(data_bin), "--output_dir", str(converted)],
                          capture_output=True, text=True, cwd=tmp_path, env=vanilla_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    run("fairseq-wd-export", checkpoint, "--to", "ctranslate2", "--quantization", "none", "--output", exported)
    assert (converted / "model.bin").read_bytes() == (exported / "model.bin").read_bytes()
    hyps = [decoding.CTranslate2Decoder(str(folder), SETTINGS).translate(test).hypotheses
            for folder in (converted, exported)]
    assert hyps[0] == hyps[1] == expected


def test_export_writes_any_checkpoint_whole(shipped, tmp_path):
    """fairseq-wd-export's fairseq output of a checkpoint that is not WD phase 1, never over a file, whole
    or not at all on a full disk."""
    checkpoint, student, _ = shipped
    out = tmp_path / "student.pt"
    full = run("fairseq-wd-export", checkpoint, "--output", out, disk_full_at=20_000, check=False)
    assert full.returncode != 0 and "File too large" in full.stderr and not os.listdir(tmp_path)
    assert "fairseq transformer" in run("fairseq-wd-export", checkpoint, "--output", out).stdout
    again = run("fairseq-wd-export", checkpoint, "--output", out, check=False)
    assert again.returncode != 0 and "exists" in again.stderr
    ours, theirs = (torch.load(p, weights_only=True) for p in (out, student))
    assert ours["model"].keys() == theirs["model"].keys()
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in ours["model"])
    assert REPO not in json.dumps(dict(ours["cfg"]["model"])), "no --user-dir or other path of the plugin"
