"""raw/{train,valid,test}.{src,tgt} -> joint sentencepiece -> `fairseq-preprocess`: the processing half of
the dataset recipes' prepare.sh (examples/*/prepare.sh), kept here so it is tested and shared.

    python -m fairseq_wd.pipeline.binarize --raw RAW --source-lang en --target-lang ro --vocab-size 32000 --dest data-bin
"""
import argparse
import os
import subprocess
import sys

from . import corpus


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fairseq_wd.pipeline.binarize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True, help="folder with {train,valid,test}.{source,target} plain text")
    p.add_argument("--source-lang", required=True)
    p.add_argument("--target-lang", required=True)
    p.add_argument("--vocab-size", type=int, default=32000, help="joint sentencepiece vocabulary (default 32000)")
    p.add_argument("--character-coverage", type=float,
                   help="sentencepiece's character coverage (default: 0.9995 when a side is zh or ja, else 1.0)")
    p.add_argument("--dest", required=True, help="the data-bin to write (must not exist yet)")
    args = p.parse_args(argv)
    src, tgt, raw = args.source_lang, args.target_lang, args.raw
    missing = [f"{s}.{lang}" for s in corpus.SPLITS for lang in (src, tgt) if not os.path.isfile(f"{raw}/{s}.{lang}")]
    if missing:
        sys.exit(f"binarize: {raw} lacks {', '.join(missing)}")
    if os.path.exists(os.path.join(args.dest, f"dict.{tgt}.txt")):
        sys.exit(f"binarize: {args.dest} already holds a data-bin; remove it or choose another --dest")
    coverage = args.character_coverage or corpus.character_coverage(src, tgt)
    model = corpus.train_sentencepiece([f"{raw}/train.{src}", f"{raw}/train.{tgt}"], os.path.join(raw, "spm"),
                                       args.vocab_size, coverage)
    corpus.encode(raw, src, tgt, model)
    fairseq_preprocess = os.path.join(os.path.dirname(sys.executable), "fairseq-preprocess")
    subprocess.run([fairseq_preprocess, *corpus.preprocess_args(raw, src, tgt, args.dest)], check=True)
    print(f"wrote {args.dest} (sentencepiece model {model})")


if __name__ == "__main__":
    main()
