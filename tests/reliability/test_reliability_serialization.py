"""A full pipeline's output (clinical_aligner + bio_ner_cnn + span_projector + icd_linker) survives DocBin,
pickle and `nlp.pipe(n_process=2)`, including the source Doc's language."""
import pickle

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_clinalign import make_pair
from tests.conftest import aligner_config
from tests.pipeline.test_bio_ner_cnn import make_examples, ner_config
from tests.pipeline.test_icd_linker import NO_PREFIX, catalog

PAIRS = [
    ("Paciente con neumonía y fiebre alta .", "Patient with pneumonia and high fever .",
     [("neumonía", "DISEASE"), ("fiebre alta", "SYMPTOM")]),
    ("Diagnóstico de diabetes mellitus tipo 2 y quiste renal .", "Diagnosis of type 2 diabetes mellitus and kidney cyst .",
     [("diabetes mellitus tipo 2", "DISEASE"), ("quiste renal", "DISEASE")]),
    ("Se realizó una tomografía de tórax .", "A chest tomography was performed .", [("tomografía de tórax", "PROCEDURE")]),
]


@pytest.fixture(scope="module")
def nlp(tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder))
    nlp.add_pipe("bio_ner_cnn", config=ner_config(tiny_encoder, spans_key="ner"))
    nlp.add_pipe("span_projector", config={"set_ents": True, "support_spans_key": "ner", "threshold": 0.05})
    nlp.add_pipe("icd_linker", config={**NO_PREFIX, "channels": "bm25", "threshold": 0.0})
    nlp.get_pipe("clinical_aligner").initialize()
    examples = make_examples(nlp, spans_key="ner")
    nlp.get_pipe("bio_ner_cnn").initialize(lambda: examples, nlp=nlp)
    nlp.get_pipe("icd_linker").initialize(catalog=catalog())
    return nlp


def _pairs(nlp):
    es = spacy.blank("es")
    out = []
    for src_text, tgt_text, mentions in PAIRS:
        src = es(src_text)
        src.ents = [src.char_span(src_text.index(m), src_text.index(m) + len(m), label=label) for m, label in mentions]
        out.append(make_pair(src, tgt_text, nlp))
    return out


def _span(span):
    return None if span is None else (span.start, span.end, span.label_, span.kb_id_, span.text)


def summary(doc):
    """Everything the pipeline wrote: exact values, and float arrays (compared with a tolerance, because
    a worker process runs torch on one thread and sums in another order)."""
    a = doc._.alignment
    exact = {
        "source": (doc._.source.text, doc._.source.lang_, [_span(e) for e in doc._.source.ents]),
        "links": a.links.tolist(),
        "ner": [_span(s) for s in doc.spans["ner"]],
        "projected": [(_span(s), _span(s._.source_span)) for s in doc.spans["projected"]],
        "unprojected": [(_span(u["span"]), u["best_token"]) for u in doc._.unprojected],
        "ents": [(_span(e), [c["code"] for c in e._.icd_candidates or []]) for e in doc.ents],
    }
    floats = {
        "matrix": a.matrix,
        "scores": numpy.array([s._.score for s in doc.spans["projected"]] + [u["best_score"] for u in doc._.unprojected]),
        **{f"bio_probs:{k}": v for k, v in doc._.bio_probs.items()},
    }
    return exact, floats


def assert_same(docs, expected):
    got = [summary(doc) for doc in docs]
    assert [exact for exact, _ in got] == [exact for exact, _ in expected]
    for (_, floats), (_, floats1) in zip(got, expected):
        assert floats.keys() == floats1.keys()
        for key in floats:
            numpy.testing.assert_allclose(floats[key], floats1[key], atol=1e-4, err_msg=key)


@pytest.fixture(scope="module")
def expected(nlp):
    docs = [nlp(doc) for doc in _pairs(nlp)]
    assert any(doc.spans["projected"] for doc in docs) and any(doc.ents for doc in docs)
    assert any(e._.icd_candidates for doc in docs for e in doc.ents)
    return [summary(doc) for doc in docs]


def test_docbin_round_trip(nlp, expected):
    data = DocBin(docs=[nlp(doc) for doc in _pairs(nlp)], store_user_data=True).to_bytes()
    docs = list(DocBin().from_bytes(data).get_docs(spacy.blank("en").vocab))
    assert_same(docs, expected)
    assert docs[0]._.source.lang_ == "es"


def test_pickle_round_trip(nlp, expected):
    docs = pickle.loads(pickle.dumps([nlp(doc) for doc in _pairs(nlp)]))
    assert_same(docs, expected)
    assert all(s._.source_span.doc is doc._.source for doc in docs for s in doc.spans["projected"])


def test_two_processes(nlp, expected):
    docs = list(nlp.pipe(_pairs(nlp), n_process=2, batch_size=1))
    assert_same(docs, expected)
    assert [doc._.source.lang_ for doc in docs] == ["es"] * len(PAIRS)


def test_source_span_must_come_from_the_source_doc(nlp):
    doc = nlp(_pairs(nlp)[0])
    other = spacy.blank("es")("otra cosa")
    with pytest.raises(ValueError, match="source Doc"):
        doc.spans["projected"][0]._.source_span = other[0:1]
    with pytest.raises(ValueError, match="source Doc"):
        doc._.unprojected = [{"span": other[0:1], "best_score": 0.0, "best_token": None}]


def test_source_doc_keeps_an_unknown_language_code():
    from spacy_clinalign.msgpack_hooks import decode_pair_objects, encode_pair_objects

    src = spacy.blank("es")("Dolor abdominal .")
    assert decode_pair_objects(encode_pair_objects(src)).lang_ == "es"
    zz = decode_pair_objects({**encode_pair_objects(src), "lang": "zz"})
    assert zz.lang_ == "zz" and zz.text == src.text
