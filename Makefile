# Two commands on a fresh machine:  `make test`  and  `make demo`.
# Both create .venv if missing and install what they need.
#   TORCH=torch==2.13.0   the pinned CPU build (default). `make test TORCH=` keeps the torch you
#                         already have (e.g. a CUDA build): the venv then sees system site-packages.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

# fairseq-fixed declares torchaudio>=0.8, which fairseq's translation code never imports; its
# newest release (2.11) is built for torch 2.11 and fails to load beside torch 2.13, and pip may
# swap the CPU torch for a multi-GB CUDA build to satisfy it. So fairseq-fixed and this plugin are
# installed without their declared dependencies, which are listed here instead (torchaudio left out).
FAIRSEQ := fairseq-fixed==0.12.3.1
DEPS := cffi cython hydra-core==1.3.2 omegaconf==2.3.0 "numpy>=1.21.3" regex "sacrebleu>=2.0" \
	tqdm bitarray scikit-learn packaging setuptools wheel sentencepiece matplotlib ctranslate2 sacremoses pytest pytest-xdist

.PHONY: install test demo clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(if $(TORCH),,--system-site-packages) $(VENV)
	$(if $(TORCH),$(PIP) install -q $(TORCH))
	$(PIP) install -q $(DEPS)
	$(BIN)/python -c "import fairseq" 2>/dev/null || \
		$(PIP) install --no-build-isolation --no-deps $(FAIRSEQ)
	$(PIP) install -q --no-deps -e .
	$(BIN)/python -c "import fairseq_wd, torch; print('fairseq-wd ready, torch', torch.__version__)"
	touch $@

# Two test processes (one thread each), a test file per process: most of a test's time is starting
# fairseq commands, which one core does as well as two. TEST_ARGS: more pytest options.
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=10 tests $(TEST_ARGS)

demo: install
	$(BIN)/fairseq-wd-pipeline --work-dir demo --shortlist --jobs 2

clean:
	rm -rf $(VENV) *.egg-info
