import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_clinalign import Alignment, make_pair
from spacy_clinalign.alignment.projection import decode_span, project_membership, row_stochastic
from spacy_clinalign.io.bio import bio_to_spans, spans_to_bio
from spacy_clinalign.scoring.spans import SpanCounts


def test_one_gap_token_is_bridged_two_are_not():
    s = numpy.array([0.9, 0.0, 0.8, 0.0, 0.0, 0.7])
    assert (decode_span(s, 0.5, max_gap=1).start, decode_span(s, 0.5, max_gap=1).end) == (0, 3)
    s2 = numpy.array([0.9, 0.0, 0.0, 0.8])
    d = decode_span(s2, 0.5, max_gap=1)
    assert (d.start, d.end) == (0, 1)  # two gap tokens: not bridged; tie in length -> higher mean
    d0 = decode_span(numpy.array([0.9, 0.0, 0.8]), 0.5, max_gap=0)
    assert d0.end - d0.start == 1


def test_longest_valid_span_wins():
    s = numpy.array([0.95, 0.0, 0.0, 0.6, 0.6, 0.6, 0.0])
    d = decode_span(s, 0.5, max_gap=1)
    assert (d.start, d.end) == (3, 6)
    assert d.score == pytest.approx(0.6)


def test_ner_support_extends_or_bridges_but_never_creates_a_span():
    s = numpy.array([0.0, 0.9, 0.2, 0.1, 0.0])
    support = numpy.array([False, False, True, True, False])
    d = decode_span(s, 0.5, support=support, support_mode="extend")
    assert (d.start, d.end) == (1, 4)
    d = decode_span(s, 0.5, support=support, support_mode="bridge")
    assert (d.start, d.end) == (1, 2)  # bridge: boundaries stay on passing tokens
    gapped = numpy.array([0.9, 0.1, 0.1, 0.1, 0.8])
    inside = numpy.array([False, True, True, True, False])
    d = decode_span(gapped, 0.5, max_gap=1, support=inside, support_mode="bridge")
    assert (d.start, d.end) == (0, 5)  # a 3-token gap bridged thanks to NER support
    assert decode_span(numpy.array([0.1, 0.2]), 0.5, support=numpy.array([True, True])) is None
    with pytest.raises(ValueError, match="support_mode"):
        decode_span(s, 0.5, support_mode="sideways")


def test_whitespace_tokens_never_start_or_end_a_span():
    s = numpy.array([0.9, 0.9])
    d = decode_span(s, 0.5, skip=numpy.array([False, True]))
    assert (d.start, d.end) == (0, 1)


def test_projection_through_a_row_stochastic_matrix():
    logits = numpy.array([[5.0, 0.0, 0.0], [0.0, 5.0, 5.0], [0.0, 0.0, 0.0]])
    rows = row_stochastic(logits, 1.0)
    numpy.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-6)
    scores = project_membership(rows, 1, 3)
    assert scores[1] > 0.99 and scores[0] < 0.02 and scores[2] == pytest.approx(2 / 3)


def test_bio_round_trip_and_repair():
    assert bio_to_spans(["B-DIS", "I-DIS", "O", "I-SYM", "B-PRO"]) == [(0, 2, "DIS"), (3, 4, "SYM"), (4, 5, "PRO")]
    assert spans_to_bio(4, [(1, 3, "DIS")]) == ["O", "B-DIS", "I-DIS", "O"]
    with pytest.raises(ValueError, match="invalid BIO tag"):
        bio_to_spans(["X-DIS"])


def test_scorer_strict_and_char_by_hand():
    counts = SpanCounts()
    # gold: [0,10) DIS and [20,30) SYM; predicted: [0,10) DIS exact, [22,30) SYM (8 of 10 chars), [40,45) SYM (spurious)
    counts.add([(0, 10, "DIS"), (22, 30, "SYM"), (40, 45, "SYM")], [(0, 10, "DIS"), (20, 30, "SYM")])
    s = counts.scores("proj_")
    assert s["proj_strict_p"] == pytest.approx(1 / 3) and s["proj_strict_r"] == pytest.approx(1 / 2)
    assert s["proj_strict_f"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # pooled chars (the old measure, kept as char_pooled_*): overlap 10 + 8 = 18; predicted 10 + 8 + 5 = 23; gold 20
    assert s["proj_char_pooled_p"] == pytest.approx(18 / 23) and s["proj_char_pooled_r"] == pytest.approx(18 / 20)
    sym = s["proj_per_type"]["SYM"]
    assert sym["char_pooled_p"] == pytest.approx(8 / 13) and sym["char_pooled_r"] == pytest.approx(8 / 10)
    assert sym["strict_p"] == 0.0
    # overlapping predictions of one label: pooled characters counted once; official: each span its own best
    c2 = SpanCounts()
    c2.add([(0, 6, "DIS"), (4, 10, "DIS")], [(0, 10, "DIS")])
    assert c2.scores("")["char_pooled_p"] == 1.0
    assert c2.scores("")["char_p"] == pytest.approx(2 * 6 / 16)


def _aligned_pair(nlp, src_words, tgt_words, pairs, src_ents):
    """A pair whose alignment links target i to source j strongly for each (i, j) in pairs."""
    source = Doc(spacy.blank("es").vocab, words=src_words)
    source.ents = [Span(source, s, e, label=l, kb_id=kb) for s, e, l, *rest in src_ents for kb in [rest[0] if rest else ""]]
    doc = make_pair(source, Doc(nlp.vocab, words=tgt_words), nlp)
    cos = numpy.zeros((len(tgt_words), len(src_words)), dtype="float32")
    for i, j in pairs:
        cos[i, j] = 1.0
    doc._.alignment = Alignment(len(tgt_words), len(src_words), pairs, matrix=cos,
                                norms=(numpy.full(len(tgt_words), 3.0), numpy.full(len(src_words), 3.0)))
    return doc


def test_component_projects_labels_extensions_and_reports_unprojected():
    nlp = spacy.blank("en")
    projector = nlp.add_pipe("span_projector", config={"threshold": 0.5, "temperature": 1.0})
    if not Span.has_extension("cui"):
        Span.set_extension("cui", default=None)
    src = ["La", "prueba", "reveló", "una", "deficiencia", "de", "calcio", "y", "fiebre"]
    tgt = ["The", "test", "revealed", "a", "calcium", "deficiency", "and", "fever", "."]
    pairs = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 6), (5, 4), (6, 7), (7, 8)]
    doc = _aligned_pair(nlp, src, tgt, pairs, [(4, 7, "DISEASE", "E83.5"), (8, 9, "SYMPTOM")])
    doc._.source.ents[0]._.cui = "C0000001"
    doc = projector(doc)
    projected = {s.label_: s for s in doc.spans["projected"]}
    assert projected["DISEASE"].text == "calcium deficiency"
    assert projected["DISEASE"].kb_id_ == "E83.5" and projected["DISEASE"]._.cui == "C0000001"
    assert projected["DISEASE"]._.source_span.text == "deficiencia de calcio"
    assert projected["SYMPTOM"].text == "fever" and 0 < projected["SYMPTOM"]._.score <= 1
    assert doc._.unprojected == []
    # a span whose tokens align to nothing lands in doc._.unprojected with its best score
    doc2 = _aligned_pair(nlp, src, tgt, [(i, j) for i, j in pairs if j != 8], [(8, 9, "SYMPTOM")])
    doc2 = projector(doc2)
    assert len(doc2.spans["projected"]) == 0
    (miss,) = doc2._.unprojected
    assert miss["span"].text == "fiebre" and miss["best_score"] < 0.5


def test_component_errors_and_scoring():
    nlp = spacy.blank("en")
    projector = nlp.add_pipe("span_projector", config={"temperature": 1.0})
    with pytest.raises(ValueError, match="no `_.source` or `_.alignment`"):
        projector(nlp("no pair here"))
    with pytest.raises(ValueError, match="threshold must be in"):
        spacy.blank("en").add_pipe("span_projector", config={"threshold": 0.0})
    src, tgt = ["dolor", "abdominal"], ["abdominal", "pain"]
    doc = projector(_aligned_pair(nlp, src, tgt, [(0, 1), (1, 0)], [(0, 2, "SYMPTOM")]))
    reference = Doc(nlp.vocab, words=tgt)
    reference.spans["projected"] = [Span(reference, 0, 2, label="SYMPTOM")]
    scores = projector.score([Example(doc, reference)])
    assert scores["proj_strict_f"] == 1.0 and scores["proj_char_f"] == 1.0


def test_ner_support_with_label_map():
    nlp = spacy.blank("en")
    projector = nlp.add_pipe("span_projector", config={
        "threshold": 0.6, "temperature": 1.0, "support_spans_key": "ner", "support_label_map": {"DISEASE": "DIS"},
        "support_mode": "extend", "decoder": "longest_run"})
    src, tgt = ["neumonía", "grave"], ["severe", "bilateral", "pneumonia"]
    doc = _aligned_pair(nlp, src, tgt, [(2, 0), (0, 1)], [(0, 1, "DIS")])
    doc.spans["ner"] = [Span(doc, 1, 3, label="DISEASE")]  # "bilateral" has no alignment: a uniform 0.5 share
    assert [s.text for s in projector(doc).spans["projected"]] == ["bilateral pneumonia"]
    projector.cfg["support_label_map"] = {}
    assert [s.text for s in projector(doc).spans["projected"]] == ["pneumonia"]  # DISEASE != DIS: no support
