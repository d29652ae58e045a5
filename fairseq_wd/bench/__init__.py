"""The bench: a test set as fairseq-generate reads it (testset.py), decoders timed alike (decoding.py;
the warmed fairseq-generate they run, generate.py), BLEU/chrF and paired significance (scoring.py), the
report (report.py), shortlist rows (shortlist_rows.py), one bench run (run.py), and keeping and merging
runs' outputs (results.py, provenance.py, merge.py)."""
