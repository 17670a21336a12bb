"""Trained weights shipped with the package (package data, no code): one folder per trained part, each an
fp16 delta over multilingual-e5-small plus its heads and model card, and `SHA256SUMS` over all of them.
`python -m spacy_clinalign pipelines build OUT_DIR` turns them into `spacy.load`-able pipelines."""
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
