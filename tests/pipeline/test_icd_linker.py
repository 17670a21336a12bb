"""icd_linker on a tiny catalogue with a tiny BERT built in the test (no download)."""
import pickle
import shutil

import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from spacy_clinalign.encoders.tiny import build_tiny_bert
from spacy_clinalign.linking.catalog import Catalog
from spacy_clinalign.linking.linker import CodeLinker
from spacy_clinalign.linking.bi_encoder import BiEncoder
from spacy_clinalign.linking.cross_encoder import CrossEncoder
from spacy_clinalign.linking.training import hard_negative_groups, train_bi_encoder, train_cross_encoder

ENTRIES = [
    ("J18.9", ["Pneumonia, unspecified organism", "neumonía"]),
    ("J18.0", ["Bronchopneumonia, unspecified organism", "bronconeumonía"]),
    ("E11.9", ["Type 2 diabetes mellitus without complications", "diabetes mellitus tipo 2"]),
    ("E10.9", ["Type 1 diabetes mellitus without complications", "diabetes mellitus tipo 1"]),
    ("N28.1", ["Cyst of kidney, acquired", "quiste renal"]),
    ("N20.0", ["Calculus of kidney", "litiasis renal"]),
    ("I10", ["Essential (primary) hypertension", "hipertensión arterial"]),
    ("R50.9", ["Fever, unspecified", "fiebre"]),
    ("J90", ["Pleural effusion, not elsewhere classified", "derrame pleural"]),
    ("K35.80", ["Unspecified acute appendicitis", "apendicitis aguda"]),
]
TEXT = "Paciente con neumonía y diabetes mellitus tipo 2 , fiebre y quiste renal ."
MENTIONS = ["neumonía", "diabetes mellitus tipo 2", "fiebre", "quiste renal"]
GOLD = ["J18.9", "E11.9", "R50.9", "N28.1"]
NO_PREFIX = {"query_prefix": "", "passage_prefix": ""}


@pytest.fixture(scope="module")
def link_encoder(tmp_path_factory):
    texts = [d for _, ds in ENTRIES for d in ds] + [TEXT, "query: passage: tos seca"]
    return build_tiny_bert(tmp_path_factory.mktemp("link_bert"), texts=texts)


def catalog() -> Catalog:
    return Catalog(ENTRIES)


def make_doc(nlp, labels=("DIS",) * 4):
    doc = nlp.make_doc(TEXT)
    spans = []
    for mention, label in zip(MENTIONS, labels):
        start = TEXT.index(mention)
        spans.append(doc.char_span(start, start + len(mention), label=label))
    doc.ents = spans
    return doc


def make_nlp(encoder, cross=None, **cfg):
    nlp = spacy.blank("es")
    linker = nlp.add_pipe("icd_linker", config={**NO_PREFIX, **cfg})
    linker.initialize(catalog=catalog(), bi_encoder=None if cfg.get("channels") == "bm25" else str(encoder),
                      cross_encoder=cross)
    return nlp


def links(doc):
    return [(e.text, e.kb_id_, [c["code"] for c in e._.icd_candidates]) for e in doc.ents]


@pytest.mark.parametrize("channels", ["dense", "bm25", "hybrid"])
def test_exact_description_ranks_first(link_encoder, channels):
    nlp = make_nlp(link_encoder, channels=channels)
    doc = nlp(make_doc(nlp))
    assert [e.kb_id_ for e in doc.ents] == GOLD
    for ent in doc.ents:
        candidates = ent._.icd_candidates
        assert candidates[0]["description"].endswith(ent.text) and len(candidates) <= 10
        assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)


def test_channels_can_be_switched_on_a_loaded_pipeline(link_encoder, tmp_path):
    """A pipeline indexed for dense keeps its BM25 index: setting cfg["channels"] changes what links, and is
    saved; an unknown channel is an error naming it."""
    nlp = make_nlp(link_encoder, channels="dense")
    nlp.to_disk(tmp_path / "linker")
    loaded = spacy.load(tmp_path / "linker")
    pipe = loaded.get_pipe("icd_linker")
    dense = [[c["retrieval_score"] for c in e._.icd_candidates] for e in loaded(make_doc(loaded)).ents]
    pipe.cfg["channels"] = "bm25"
    bm25 = [[c["retrieval_score"] for c in e._.icd_candidates] for e in loaded(make_doc(loaded)).ents]
    expected = make_nlp(link_encoder, channels="bm25")
    assert bm25 == [[c["retrieval_score"] for c in e._.icd_candidates] for e in expected(make_doc(expected)).ents]
    assert bm25 != dense
    pipe.cfg["channels"] = "fuzzy"
    with pytest.raises(ValueError, match="'fuzzy'"):
        loaded(make_doc(loaded))


def test_nil_below_threshold_and_unlinkable_mentions(link_encoder):
    nlp = make_nlp(link_encoder, threshold=1.01)  # cosine can never reach it
    doc = nlp(make_doc(nlp))
    assert [e.kb_id_ for e in doc.ents] == ["NIL"] * 4
    assert all(e._.icd_candidates for e in doc.ents)  # candidates are kept for review
    bm25 = make_nlp(link_encoder, channels="bm25")
    doc = bm25.make_doc("xyzzy plugh")
    doc.ents = [Span(doc, 0, 2, label="DIS")]
    doc = bm25(doc)
    assert doc.ents[0].kb_id_ == "NIL" and doc.ents[0]._.icd_candidates == []


def test_labels_filter_and_span_group(link_encoder):
    nlp = make_nlp(link_encoder, labels=["DIS"])
    doc = nlp(make_doc(nlp, labels=("DIS", "PROC", "DIS", "PROC")))
    assert [e.kb_id_ for e in doc.ents] == ["J18.9", "", "R50.9", ""]
    assert doc.ents[1]._.icd_candidates is None
    grouped = make_nlp(link_encoder, spans_key="sc")
    doc = grouped.make_doc(TEXT)
    source = make_doc(grouped)
    doc.spans["sc"] = [Span(doc, e.start, e.end, label=e.label_) for e in source.ents] + [Span(doc, 2, 3, label="X")]
    doc = grouped(doc)
    assert [s.kb_id_ for s in doc.spans["sc"]][:4] == GOLD
    assert doc.spans["sc"][0]._.icd_candidates[0]["code"] == "J18.9"
    assert list(doc.ents) == []


def test_empty_and_entity_free_docs(link_encoder):
    nlp = make_nlp(link_encoder)
    assert len(nlp("")) == 0
    doc = nlp("sin entidades")
    assert doc._.icd_links is None or doc._.icd_links == {}


def test_round_trip_offline_with_identical_candidates(link_encoder, tmp_path):
    encoder = tmp_path / "encoder_copy"
    shutil.copytree(link_encoder, encoder)
    nlp = make_nlp(encoder, channels="hybrid")
    before = links(nlp(make_doc(nlp)))
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(encoder)  # the saved pipeline must not need it
    loaded = spacy.load(tmp_path / "pipeline")
    assert links(loaded(make_doc(loaded))) == before
    again = spacy.blank("es")
    again.add_pipe("icd_linker").from_bytes(loaded.get_pipe("icd_linker").to_bytes())
    assert links(again(make_doc(again))) == before


def test_pickle_and_two_processes(link_encoder):
    nlp = make_nlp(link_encoder)
    expected = links(nlp(make_doc(nlp)))
    component = pickle.loads(pickle.dumps(nlp.get_pipe("icd_linker")))
    doc = make_doc(nlp)
    assert links(component(doc)) == expected
    docs = [make_doc(nlp) for _ in range(4)]
    assert [links(d) for d in nlp.pipe(docs, n_process=2, batch_size=2)] == [expected] * 4


def test_clear_errors(link_encoder, tmp_path):
    nlp = spacy.blank("es")
    linker = nlp.add_pipe("icd_linker")
    with pytest.raises(ValueError, match="not initialized"):
        linker(make_doc(nlp))
    with pytest.raises(ValueError, match="needs a catalogue"):
        linker.initialize(bi_encoder=str(link_encoder))
    with pytest.raises(ValueError, match="needs bi_encoder"):
        linker.initialize(catalog=catalog())
    with pytest.raises(ValueError, match="does not exist.*local folders only"):
        linker.initialize(catalog=catalog(), bi_encoder=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="channels must be one of"):
        spacy.blank("es").add_pipe("icd_linker", config={"channels": "sparse"})
    with pytest.raises(ValueError, match="not a saved icd_linker"):
        linker.from_disk(tmp_path)


def test_scorer_reports_the_three_levels(link_encoder):
    nlp = make_nlp(link_encoder)
    reference = make_doc(nlp)
    for token, code in zip([reference.ents[i] for i in range(4)], ["J18.9", "E11.65", "R50.9", "N28.1"]):
        for t in token:
            t.ent_kb_id_ = code
    scores = nlp.evaluate([Example(make_doc(nlp), reference)])
    assert scores["link_exact_p"] == pytest.approx(0.75) and scores["link_exact_r"] == pytest.approx(0.75)
    assert scores["link_category_f"] == 1.0 and scores["link_chapter_f"] == 1.0
    assert 0.75 <= scores["link_exact_map@10"] < 1.0


def test_training_both_encoders_on_the_tiny_catalogue(link_encoder, tmp_path):
    """Bi-encoder loss falls; the listwise reranker learns to put each mention's code first."""
    pairs = [(m, c) for m, c in zip(MENTIONS, GOLD)] + [("bronconeumonía", "J18.0"), ("litiasis renal", "N20.0"),
                                                         ("hipertensión arterial", "I10"), ("derrame pleural", "J90")]
    stats = train_bi_encoder(link_encoder, tmp_path / "bi", pairs * 8, catalog(), batch_size=8, lr=1e-3,
                             progress=False, **NO_PREFIX)
    assert stats["loss_last"] < stats["loss_first"]
    linker = CodeLinker(catalog(), BiEncoder(tmp_path / "bi", **NO_PREFIX)).build()
    groups = hard_negative_groups(pairs, linker, n_negatives=4, n_siblings=1)
    assert len(groups) == len(pairs) and all(len(texts) == 5 for _, texts in groups)
    positive, negatives = groups[0][1][0], groups[0][1][1:]
    assert positive.startswith("Pneumonia, unspecified organism")
    assert not any(n.startswith("Pneumonia, unspecified organism") for n in negatives)
    assert any(n.startswith("Bronchopneumonia") for n in negatives)  # the same-category sibling
    # Train on what the linker will show: every other code, described by the row retrieval matched.
    groups = hard_negative_groups(pairs, linker, n_negatives=9, n_siblings=0)
    stats = train_cross_encoder(tmp_path / "bi", tmp_path / "cross", groups, epochs=120, group_batch=4, lr=3e-3,
                                warmup=0.0, progress=False)
    assert stats["loss_last"] < 0.5 * stats["loss_first"]
    reranker = CrossEncoder(tmp_path / "cross")
    for query, texts in groups:
        assert reranker.score([(query, t) for t in texts]).argmax() == 0
    nlp = make_nlp(tmp_path / "bi", cross=str(tmp_path / "cross"))
    doc = nlp(make_doc(nlp))
    assert [e.kb_id_ for e in doc.ents] == GOLD
    assert all(0.0 <= c["score"] <= 1.0 for e in doc.ents for c in e._.icd_candidates)


def test_train_layers_trains_only_the_top_layers(link_encoder, tmp_path):
    """--train-layers 1: the embeddings and layer 0 come out bit-identical, the top layer moved."""
    from spacy_clinalign.shipping.deltas import load_base_encoder

    pairs = [(m, c) for m, c in zip(MENTIONS, GOLD)] + [("litiasis renal", "N20.0"), ("derrame pleural", "J90")]
    stats = train_bi_encoder(link_encoder, tmp_path / "bi", pairs * 4, catalog(), batch_size=6, lr=1e-2,
                             progress=False, train_layers=1, **NO_PREFIX)
    base = load_base_encoder(link_encoder).transformer.state_dict()
    trained = load_base_encoder(tmp_path / "bi").transformer.state_dict()
    names = [n for n, t in base.items() if t.is_floating_point()]
    top = [n for n in names if n.startswith("encoder.layer.1.")]
    frozen = [n for n in names if n not in top]
    assert top and any(n.startswith("embeddings.") for n in frozen) and any(n.startswith("encoder.layer.0.") for n in frozen)
    assert all(base[n].equal(trained[n]) for n in frozen)
    assert all(not base[n].equal(trained[n]) for n in top if n.endswith(".weight"))
    assert stats["trained_parameters"] == sum(base[n].numel() for n in top)
    with pytest.raises(ValueError, match=r"--train-layers must be an integer from 1 to 2 .* got 3"):
        train_bi_encoder(link_encoder, tmp_path / "bad", pairs, catalog(), train_layers=3, progress=False)
