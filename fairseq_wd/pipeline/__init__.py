"""`fairseq-wd-pipeline`: corpus -> teacher -> every kind of student -> benchmark, resumable."""
