#!/usr/bin/env bash
# Issue 16: a `spacy package` wheel of a shipped pipeline installs in a fresh venv and loads offline with no
# other folder present (no repository checkout on sys.path, no encoder cache, no pipelines/ folder), and
# gives the same links as the built pipeline folder it came from. Prints the timings and the verdict.
#
#   bash bench/fresh_venv_wheel.sh WHEEL BUILT_PIPELINE_DIR [WORK_DIR]
#   e.g. python -m spacy_clinalign pipelines build /tmp/w16/pipelines --only es_en_clinical_aligner
#        python -m spacy_clinalign pipelines package /tmp/w16/pipelines /tmp/w16/packages
#        bash bench/fresh_venv_wheel.sh /tmp/w16/packages/dist/en_es_en_clinical_aligner-0.1.0-py3-none-any.whl /tmp/w16/pipelines/es_en_clinical_aligner
set -euo pipefail
WHEEL=$(realpath "$1"); BUILT=$(realpath "$2"); WORK=${3:-$(mktemp -d)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEV_PYTHON=${DEV_PYTHON:-$REPO/.venv/bin/python}
PACKAGE=$(basename "$WHEEL" | cut -d- -f1)
mkdir -p "$WORK" && cd "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The aligner: links of two sentence pairs; the NER pipeline: the spans of two sentences.
SNIPPET='
import sys, json, spacy
from spacy_clinalign.pairs import pair_from_words
nlp = spacy.load(sys.argv[1])
if "clinical_aligner" in nlp.pipe_names:
    pairs = [("el paciente presenta fiebre y tos seca desde hace tres días .".split(),
              "the patient has had fever and a dry cough for three days .".split()),
             ("se realizó una tomografía computarizada de tórax sin contraste .".split(),
              "a chest computed tomography without contrast was performed .".split())]
    out = [sorted(map(list, d._.alignment.pairs())) for d in nlp.pipe(pair_from_words(nlp.vocab, s, t) for s, t in pairs)]
else:
    key = nlp.get_pipe("bio_ner_cnn").cfg["spans_key"]
    texts = ["Paciente de 67 años con neumonía adquirida en la comunidad y fiebre alta de tres días.",
             "Se realizó una tomografía computarizada de tórax que mostró un derrame pleural bilateral."]
    out = [[(s.start_char, s.end_char, s.label_) for s in (d.spans[key] if key else d.ents)] for d in nlp.pipe(texts)]
print(json.dumps(out))
'
start=$(date +%s)
python3.11 -m venv venv
venv/bin/pip install -q torch==2.13.0
venv/bin/pip install -q "$REPO"          # spacy-clinalign itself, not editable: nothing points back at the checkout
venv/bin/pip install -q "$WHEEL"
echo "install: $(( $(date +%s) - start )) s"

mkdir -p empty-home empty-cache run
expected=$(cd run && "$DEV_PYTHON" -c "$SNIPPET" "$BUILT" 2>/dev/null)
start=$(date +%s)
# A fresh HOME and XDG cache: no imported encoder, no Hugging Face cache; cwd holds nothing.
got=$(cd run && env -i PATH=/usr/bin:/bin HOME="$WORK/empty-home" XDG_CACHE_HOME="$WORK/empty-cache" \
      HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$WORK/venv/bin/python" -c "$SNIPPET" "$PACKAGE" 2>/dev/null)
echo "load + run 2 examples in the fresh venv: $(( $(date +%s) - start )) s"
echo "files in the fresh HOME and cache after loading (0: no encoder cache was read or written): $(find "$WORK/empty-cache" "$WORK/empty-home" -mindepth 1 | wc -l)"
echo "built folder: $expected"
echo "wheel:        $got"
if [ "$expected" = "$got" ] && [ -n "$got" ]; then echo "same output: yes"; else echo "same output: NO"; exit 1; fi
