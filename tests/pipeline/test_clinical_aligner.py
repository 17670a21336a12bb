import shutil
import subprocess
import sys
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from spacy_clinalign import make_pair
from spacy_clinalign.io.readers import make_pair_example
from tests.conftest import aligner_config

SRC = "La prueba reveló una deficiencia de calcio y potasio, probablemente resultado de su dieta."
TGT = "The test revealed a calcium and potassium deficiency, probably a result of her diet."


def make_nlp(encoder, **overrides):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(encoder, **overrides))
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def nlp(tiny_encoder):
    return make_nlp(tiny_encoder)


def pair(nlp, src=SRC, tgt=TGT):
    return make_pair(spacy.blank("es")(src), tgt, nlp)


def test_factory_available_without_import(tiny_encoder):
    code = (
        "import spacy, sys\n"
        "nlp = spacy.blank('en')\n"
        f"nlp.add_pipe('clinical_aligner', config={aligner_config(tiny_encoder)!r})\n"
        "print(type(nlp.get_pipe('clinical_aligner')).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ClinicalAligner"


def test_aligns_a_pair(nlp):
    doc = nlp(pair(nlp))
    a = doc._.alignment
    assert a.matrix.shape == (len(doc), len(doc._.source))
    assert len(a) > 0
    assert all(0 <= i < len(doc) and 0 <= j < len(doc._.source) for i, j in a.links)
    assert numpy.all((a.probs >= 0) & (a.probs <= 1))
    i, j = a.links[0]
    assert j in a.sources_of(int(i)) and i in a.targets_of(int(j))


def test_pipe_batches_match_single_docs(nlp):
    texts = [(SRC, TGT), ("Dolor abdominal y fiebre.", "Abdominal pain and fever."), (SRC * 3, TGT * 3)]
    single = [nlp(pair(nlp, s, t))._.alignment for s, t in texts]
    batched = [d._.alignment for d in nlp.pipe([pair(nlp, s, t) for s, t in texts], batch_size=3)]
    for a, b in zip(single, batched):
        assert numpy.array_equal(a.links, b.links)
        numpy.testing.assert_allclose(a.matrix, b.matrix, atol=1e-5)


@pytest.mark.parametrize("method", ["argmax", "itermax", "threshold"])
@pytest.mark.parametrize("sinkhorn_iterations", [0, 20])
def test_extraction_methods(tiny_encoder, method, sinkhorn_iterations):
    nlp = make_nlp(tiny_encoder, method=method, sinkhorn_iterations=sinkhorn_iterations)
    a = nlp(pair(nlp))._.alignment
    assert a.method == method and len(a) > 0


def test_empty_and_whitespace_docs_give_empty_alignments(nlp):
    empty_src = nlp(make_pair(Doc(nlp.vocab, words=[]), TGT, nlp))._.alignment
    assert empty_src.matrix.shape == (len(nlp.make_doc(TGT)), 0) and len(empty_src) == 0
    empty_tgt = nlp(make_pair(spacy.blank("es")(SRC), "", nlp))._.alignment
    assert empty_tgt.n_target == 0 and len(empty_tgt) == 0
    spaces = nlp(make_pair(spacy.blank("es")("   \n  "), "  \t ", nlp))._.alignment
    assert len(spaces) == 0  # whitespace tokens carry no meaning and never get links
    mixed = nlp(make_pair(spacy.blank("es")("dolor   abdominal"), "abdominal  pain", nlp))
    assert all(not mixed[int(i)].is_space and not mixed._.source[int(j)].is_space for i, j in mixed._.alignment.links)


def test_missing_source_policies(tiny_encoder, nlp):
    with pytest.warns(UserWarning, match="has no `_.source`"):
        doc = nlp("The test revealed nothing.")
    assert doc._.alignment is None
    strict = make_nlp(tiny_encoder, on_missing_source="error")
    with pytest.raises(ValueError, match="has no `_.source`.*make_pair"):
        strict("The test revealed nothing.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_nlp(tiny_encoder, on_missing_source="ignore")("x")._.alignment is None


def test_bad_configuration_errors(tmp_path, tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tmp_path / "nope"))
    with pytest.raises(ValueError, match="encoder folder .*nope.* does not exist.*local folders only"):
        nlp.initialize()
    nlp = spacy.blank("en")
    cfg = aligner_config(tiny_encoder)
    cfg["model"]["layer"] = 9
    nlp.add_pipe("clinical_aligner", config=cfg)
    with pytest.raises(ValueError, match="layer 9 requested but .* has only 2 layers"):
        nlp.initialize()
    with pytest.raises(ValueError, match="unknown method"):
        spacy.blank("en").add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, method="best"))


def test_to_disk_and_load_offline_after_encoder_is_deleted(tmp_path, tiny_encoder):
    encoder = tmp_path / "encoder_copy"
    shutil.copytree(tiny_encoder, encoder)
    nlp = make_nlp(encoder)
    before = nlp(pair(nlp))._.alignment
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(encoder)
    code = (
        "import os, sys, spacy, numpy\n"
        "os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "from spacy_clinalign import make_pair\n"
        f"nlp = spacy.load({str(tmp_path / 'pipeline')!r})\n"
        f"doc = nlp(make_pair(spacy.blank('es')({SRC!r}), {TGT!r}, nlp))\n"
        f"numpy.save({str(tmp_path / 'after.npy')!r}, doc._.alignment.matrix)\n"
        "print(doc._.alignment.to_pharaoh())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == before.to_pharaoh()
    numpy.testing.assert_allclose(numpy.load(tmp_path / "after.npy"), before.matrix, atol=1e-6)


def test_long_document_is_not_truncated(nlp):
    words = (SRC.split() * 250)[:3000]
    tgt_words = (TGT.split() * 250)[:3000]
    doc = make_pair(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=tgt_words), nlp)
    doc = nlp(doc)
    a = doc._.alignment
    assert a.matrix.shape == (3000, 3000)
    # every token got a vector: no all-zero row or column, so every token can receive links
    assert numpy.abs(a.matrix).sum(axis=1).min() > 0 and numpy.abs(a.matrix).sum(axis=0).min() > 0
    assert a.links[:, 0].max() > 2900 and a.links[:, 1].max() > 2900


def test_evaluate_with_reader_examples_and_docbin(tmp_path, nlp):
    src, tgt = ["la", "casa", "es", "pequeña"], ["the", "house", "is", "small"]
    gold = [(0, 0, True), (1, 1, True), (2, 2, True), (3, 3, False)]
    examples = [make_pair_example(nlp.vocab, src, tgt, gold)]
    scores = nlp.evaluate(examples)
    assert {"align_aer", "align_p", "align_r", "align_f"} <= set(scores)
    # `spacy evaluate` rebuilds predicted Docs from the reference text, losing `_.source`:
    # the component's score() aligns them from the reference's source.
    reference = examples[0].reference
    db = DocBin(docs=[reference], store_user_data=True)
    restored = list(DocBin().from_bytes(db.to_bytes()).get_docs(nlp.vocab))[0]
    bare = Example(nlp.make_doc(restored.text), restored)
    with pytest.warns(UserWarning):
        again = nlp.evaluate([bare])
    assert again["align_aer"] == pytest.approx(scores["align_aer"])


def test_spacy_evaluate_cli_scores_the_aligner(tmp_path, nlp):
    """`spacy evaluate` builds its own Examples (dropping `_.source`); the aligner's score() recovers the pair.
    spaCy's printed table lists only built-in metrics, so the scores are read from --per-component --output."""
    import json

    src, tgt = ["la", "casa", "es", "pequeña"], ["the", "house", "is", "small"]
    example = make_pair_example(nlp.vocab, src, tgt, [(0, 0, True), (1, 1, True), (2, 2, True), (3, 3, True)])
    DocBin(docs=[example.reference], store_user_data=True).to_disk(tmp_path / "gold.spacy")
    nlp.to_disk(tmp_path / "pipeline")
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "evaluate", str(tmp_path / "pipeline"), str(tmp_path / "gold.spacy"),
         "--per-component", "--output", str(tmp_path / "scores.json")],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    scores = json.loads((tmp_path / "scores.json").read_text())["clinical_aligner"]
    assert set(scores) == {"align_aer", "align_p", "align_r", "align_f"} and 0 <= scores["align_aer"] <= 1
