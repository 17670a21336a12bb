"""span_projector's candidate decoder, both-direction symmetrisation and edge rules, on hand-made matrices."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span

from spacy_clinalign import Alignment, make_pair
from spacy_clinalign.alignment.candidates import SpanEvidence, blocked_edges, decode_candidates
from spacy_clinalign.alignment.projection import decode_span
from spacy_clinalign.alignment.symmetrize import directional_links, symmetrize


def _pair(nlp, src_words, tgt_words, logits, src_spans):
    """A pair whose dot-product matrix is `logits` (target x source); src_spans (start, end, label) become
    the source's span group "gold" (overlaps allowed)."""
    source = Doc(spacy.blank("es").vocab, words=src_words)
    source.spans["gold"] = [Span(source, s, e, label=lab) for s, e, lab in src_spans]
    doc = make_pair(source, Doc(nlp.vocab, words=tgt_words), nlp)
    logits = numpy.asarray(logits, dtype="float32")
    doc._.alignment = Alignment(len(tgt_words), len(src_words), [], matrix=logits,
                                norms=(numpy.ones(len(tgt_words)), numpy.ones(len(src_words))))
    return doc


def _projector(nlp, **cfg):
    config = {"source_spans_key": "gold", "temperature": 1.0, "threshold": 0.1, "target_lang": "en",
              "source_lang": "es"}
    config.update(cfg)
    return nlp.add_pipe("span_projector", config=config)


def test_candidate_beats_a_longer_run_when_the_extra_token_carries_little_mass():
    share = numpy.array([0.0, 0.9, 0.95, 0.12, 0.0])
    ev = SpanEvidence(share, numpy.ones(5, dtype=bool), numpy.array([0.0, 0.45, 0.5, 0.05, 0.0]))
    run = decode_span(share, 0.1, max_gap=1)
    assert (run.start, run.end) == (1, 4)  # the longest run takes the weak third token
    (best,) = decode_candidates(ev, source_len=2, threshold=0.1, length_prior=0.0)
    assert (best.start, best.end) == (1, 3)


def test_candidate_decoder_in_the_pipeline_drops_a_weak_edge_token():
    src = ["dolor", "torácico", "intenso"]
    tgt = ["chest", "pain", "radiating"]
    logits = numpy.log(numpy.array([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]))
    for decoder, expected in (("longest_run", "chest pain radiating"), ("candidates", "chest pain")):
        nlp = spacy.blank("en")
        projector = _projector(nlp, decoder=decoder, threshold=0.15)
        doc = projector(_pair(nlp, src, tgt, logits, [(0, 2, "SYM")]))
        assert [s.text for s in doc.spans["projected"]] == [expected], decoder


@pytest.mark.parametrize("decoder", ["longest_run", "candidates"])
def test_punctuation_is_never_an_edge_unless_the_source_span_has_it(decoder):
    src = ["fiebre", "alta", "."]
    tgt = ["(", "high", "fever", "."]
    logits = numpy.log(numpy.array([[0.5, 0.5, 0.0001], [0.1, 0.9, 0.0001], [0.9, 0.1, 0.0001], [0.5, 0.5, 0.0001]]) + 1e-6)
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder=decoder)
    doc = projector(_pair(nlp, src, tgt, logits, [(0, 2, "SYM")]))
    (span,) = doc.spans["projected"]
    assert span.text == "high fever"
    assert not span[0].is_punct and not span[-1].is_punct
    # the source span ends on "." -> a final "." may be kept
    logits2 = logits.copy()
    logits2[3] = numpy.log(numpy.array([0.0001, 0.0001, 0.9998]))
    doc = projector(_pair(nlp, src, tgt, logits2, [(0, 3, "SYM")]))
    assert doc.spans["projected"][0].text.endswith(".")


def test_candidates_do_not_start_on_function_words():
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder="candidates", length_prior=0.0)
    src = ["hepatomegalia"]
    tgt = ["the", "hepatomegaly", "was"]
    logits = numpy.log(numpy.array([[0.9], [0.9], [0.01]]))  # one source column: every row is all inside
    doc = projector(_pair(nlp, src, tgt, logits, [(0, 1, "DIS")]))
    assert [s.text for s in doc.spans["projected"]] == ["hepatomegaly"]
    assert blocked_edges(Doc(nlp.vocab, words=["And,", "pain", ";"]), "en").tolist() == [True, False, True]


def test_both_directions_combined_on_a_hand_made_matrix():
    # target rows x source columns. Row argmax: t0->s0, t1->s1, t2->s1. Column argmax: s0->t0, s1->t1, s2->t2.
    logits = numpy.array([[5.0, 0.0, 0.0],
                          [0.0, 5.0, 0.0],
                          [0.0, 3.0, 2.9]])
    t2s, s2t = directional_links(logits)
    assert sorted(zip(*numpy.nonzero(t2s))) == [(0, 0), (1, 1), (2, 1)]
    assert sorted(zip(*numpy.nonzero(s2t))) == [(0, 0), (1, 1), (2, 2)]
    links = lambda m: sorted((int(i), int(j)) for i, j in zip(*numpy.nonzero(symmetrize(t2s, s2t, m))))
    assert links("intersection") == [(0, 0), (1, 1)]
    assert links("union") == [(0, 0), (1, 1), (2, 1), (2, 2)]
    # grow-diag adds union links next to the intersection whose target or source is unaligned:
    # here (2, 1) (vertical neighbour of (1, 1), target 2 unaligned), then (2, 2) (source 2 unaligned)
    assert links("grow_diag_final") == [(0, 0), (1, 1), (2, 1), (2, 2)]
    # a union link far from the intersection between two aligned words stays out of grow-diag-final
    wide = numpy.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0], [4.0, 0, 0, 3.9]])
    t2s, s2t = directional_links(wide)
    assert links("union") == [(0, 0), (1, 1), (2, 2), (3, 0), (3, 3)]
    assert links("grow_diag_final") == [(0, 0), (1, 1), (2, 2), (3, 3)]
    with pytest.raises(ValueError, match="method"):
        symmetrize(t2s, s2t, "average")


def test_symmetrised_projection_follows_the_links():
    nlp = spacy.blank("en")
    logits = numpy.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 3.0, 2.9]])
    for method, expected in (("intersection", ["b"]), ("union", ["b c"])):
        projector = _projector(nlp if method == "intersection" else spacy.blank("en"), symmetrize=method,
                                   decoder="longest_run")
        doc = projector(_pair(nlp, ["x", "y", "z"], ["a", "b", "c"], logits, [(1, 2, "DIS")]))
        assert [s.text for s in doc.spans["projected"]] == expected, method


@pytest.mark.parametrize("decoder", ["longest_run", "candidates"])
def test_a_source_span_with_no_aligned_target_token_is_unprojected_with_its_reason(decoder):
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder=decoder, symmetrize="intersection")
    # source "z" is nobody's mutual best: no link survives the intersection
    logits = numpy.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 3.0, 2.9]])
    doc = projector(_pair(nlp, ["x", "y", "z"], ["a", "b", "c"], logits, [(0, 1, "DIS"), (2, 3, "SYM")]))
    assert [(s.text, s.label_) for s in doc.spans["projected"]] == [("a", "DIS")]
    (miss,) = doc._.unprojected
    assert miss["span"].text == "z" and miss["reason"] == "no_aligned_target" and miss["best_score"] == 0.0


@pytest.mark.parametrize("decoder", ["longest_run", "candidates"])
def test_overlapping_source_spans_of_different_labels_both_project(decoder):
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder=decoder)
    src = ["dolor", "abdominal", "agudo"]
    tgt = ["acute", "abdominal", "pain"]
    eye = numpy.full((3, 3), -5.0)
    for i, j in ((0, 2), (1, 1), (2, 0)):
        eye[i, j] = 5.0
    doc = projector(_pair(nlp, src, tgt, eye, [(0, 2, "SYM"), (0, 3, "DIS")]))
    assert sorted((s.text, s.label_) for s in doc.spans["projected"]) == [
        ("abdominal pain", "SYM"), ("acute abdominal pain", "DIS")]


def test_candidates_is_the_default_decoder():
    assert spacy.blank("en").add_pipe("span_projector").cfg["decoder"] == "candidates"


def test_bad_decoder_settings_are_refused():
    for cfg, word in (({"decoder": "beam"}, "decoder"), ({"symmetrize": "avg"}, "symmetrize"),
                      ({"max_length": 0}, "max_length"), ({"beta": 0.0}, "beta")):
        with pytest.raises(ValueError, match=word):
            spacy.blank("en").add_pipe("span_projector", config=cfg)


def test_both_directions_recover_a_word_whose_row_goes_to_another_copy_of_its_translation():
    # "heart"'s own row prefers the second "cardiaca" (outside the span), but the span's "cardiaca" column
    # chooses "heart": the rows alone drop it, the mean of both directions keeps it
    src = ["insuficiencia", "cardiaca", "x", "cardiaca"]
    tgt = ["heart", "failure", "y", "z"]
    logits = numpy.array([[0.0, 2.0, 0.0, 6.0],
                          [6.0, 0.0, 0.0, 0.0],
                          [0.0, 0.0, 5.0, 0.0],
                          [0.0, 0.0, 0.0, 8.0]])
    for directions, expected in (("target_to_source", ["failure"]), ("both", ["heart failure"])):
        nlp = spacy.blank("en")
        projector = _projector(nlp, directions=directions, exclusive=False, min_score=0.0)
        doc = projector(_pair(nlp, src, tgt, logits, [(0, 2, "DIS")]))
        assert [s.text for s in doc.spans["projected"]] == expected, directions


def test_exclusive_sends_a_repeated_term_to_its_own_translation():
    # both "fiebre" rows and columns prefer the first "fever"; exclusive gives the weaker one the second
    src = ["fiebre", "y", "fiebre"]
    tgt = ["fever", "and", "fever"]
    logits = numpy.array([[5.0, 0.0, 5.0], [0.0, 5.0, 0.0], [3.0, 0.0, 3.0]])
    spans = [(0, 1, "SYM"), (2, 3, "SYM")]
    nlp = spacy.blank("en")
    doc = _projector(nlp, exclusive=False, min_score=0.0)(_pair(nlp, src, tgt, logits, spans))
    assert [(s.start, s.end) for s in doc.spans["projected"]] == [(0, 1), (0, 1)]
    nlp = spacy.blank("en")
    doc = _projector(nlp, exclusive=True, min_score=0.0)(_pair(nlp, src, tgt, logits, spans))
    assert sorted((s.start, s.end) for s in doc.spans["projected"]) == [(0, 1), (2, 3)]
    # nested source spans of one label may still share target tokens; another label is never blocked
    nlp = spacy.blank("en")
    doc = _projector(nlp, exclusive=True, min_score=0.0)(
        _pair(nlp, src, tgt, logits, [(0, 1, "SYM"), (0, 3, "SYM"), (2, 3, "DIS")]))
    assert len(doc.spans["projected"]) == 3 and not doc._.unprojected


def test_exclusive_leaves_a_source_span_with_only_taken_targets_unprojected_with_its_reason():
    src = ["fiebre", "y", "fiebre"]
    tgt = ["fever", "and"]
    logits = numpy.array([[5.0, 0.0, 4.0], [0.0, 5.0, 0.0]])
    nlp = spacy.blank("en")
    doc = _projector(nlp, exclusive=True)(_pair(nlp, src, tgt, logits, [(0, 1, "SYM"), (2, 3, "SYM")]))
    assert [(s.text, s._.source_span.start) for s in doc.spans["projected"]] == [("fever", 0)]
    (miss,) = doc._.unprojected
    assert miss["span"].start == 2 and miss["reason"] == "target_taken"


def test_min_score_leaves_a_weak_projection_unprojected_with_its_reason():
    src = ["dolor", "x"]
    tgt = ["pain", "y", "z"]
    logits = numpy.array([[1.0, 0.8], [0.0, 3.0], [0.0, 3.0]])  # "pain" barely prefers "dolor"
    nlp = spacy.blank("en")
    doc = _projector(nlp, min_score=0.0)(_pair(nlp, src, tgt, logits, [(0, 1, "SYM")]))
    (span,) = doc.spans["projected"]
    assert span.text == "pain" and span._.score < 0.9
    nlp = spacy.blank("en")
    doc = _projector(nlp, min_score=0.9)(_pair(nlp, src, tgt, logits, [(0, 1, "SYM")]))
    assert not doc.spans["projected"]
    (miss,) = doc._.unprojected
    assert miss["reason"] == "low_score"


def test_character_length_prior_keeps_the_many_word_rendering_of_a_one_word_term():
    # "hemocultivos" (1 token, 12 characters) -> "blood cultures" (2 tokens, 14 characters)
    ev = SpanEvidence(numpy.array([0.9, 0.9]), numpy.ones(2, dtype=bool), numpy.array([0.5, 0.5]))
    (by_tokens,) = decode_candidates(ev, source_len=1, threshold=0.1, length_prior=1.5)
    assert (by_tokens.start, by_tokens.end) == (0, 1)
    offsets = numpy.array([[0, 5], [6, 14]])
    (by_chars,) = decode_candidates(ev, source_len=1, threshold=0.1, length_prior=1.5, char_offsets=offsets,
                                    source_chars=12)
    assert (by_chars.start, by_chars.end) == (0, 2)


def test_new_decoder_settings_are_checked():
    for cfg, word in (({"directions": "sideways"}, "directions"), ({"length_unit": "words"}, "length_unit"),
                      ({"min_score": 1.5}, "min_score")):
        with pytest.raises(ValueError, match=word):
            spacy.blank("en").add_pipe("span_projector", config=cfg)


def _effusion_pair(nlp, effusion_row):
    """"derrame pleural bilateral" -> "bilateral pleural effusion observed": the modifiers align well, the head
    noun's row mostly leaves the span (as the untrained e5 does with "effusion")."""
    src = ["derrame", "pleural", "bilateral", "observado"]
    tgt = ["bilateral", "pleural", "effusion", "observed"]
    rows = [[0.02, 0.02, 0.94, 0.02], [0.02, 0.94, 0.02, 0.02], effusion_row, [0.02, 0.02, 0.02, 0.94]]
    return _pair(nlp, src, tgt, numpy.log(numpy.array(rows)), [(0, 3, "DIS")])


@pytest.mark.parametrize("keep, expected", [(False, "bilateral pleural"), (True, "bilateral pleural effusion")])
def test_an_english_span_does_not_end_on_a_modifier_before_its_head_noun(keep, expected):
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder="candidates", keep_head_nouns=keep, min_score=0.0)
    doc = projector(_effusion_pair(nlp, [0.02, 0.02, 0.02, 0.94]))
    assert [s.text for s in doc.spans["projected"]] == [expected]


def test_the_head_noun_rule_needs_an_english_target():
    """Spanish, Italian... put adjectives after the noun: without a rule for the target language nothing changes."""
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder="candidates", keep_head_nouns=True, min_score=0.0, target_lang="it")
    doc = projector(_effusion_pair(nlp, [0.02, 0.02, 0.02, 0.94]))
    assert [s.text for s in doc.spans["projected"]] == ["bilateral pleural"]


def test_modifier_ends_marks_modifiers_followed_by_a_content_word():
    from spacy_clinalign.alignment.candidates import stop_words
    from spacy_clinalign.alignment.noun_phrases import modifier_ends

    nlp = spacy.blank("en")
    doc = nlp("bilateral pleural effusion and left renal colic radiating, valves thickened, with hospital stay")
    marked = [t.text for t, m in zip(doc, modifier_ends(doc, "en", stop_words("en"))) if m]
    # "effusion" is a noun; "renal" precedes "colic"; "colic" is a noun though "radiating" follows; "thickened"
    # has its comma; "hospital" is a listed noun
    assert marked == ["bilateral", "pleural", "left", "renal"]
    assert not modifier_ends(doc, "es").any() and not modifier_ends(doc, None).any()


def test_a_span_does_not_run_past_a_header_colon_unless_the_source_span_does():
    nlp = spacy.blank("en")
    projector = _projector(nlp, decoder="candidates", min_score=0.0, length_prior=0.0)
    tgt = ["Chest", "X-ray:", "decubitus", "study"]
    rows = numpy.log(numpy.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.2, 0.2], [0.1, 0.45, 0.45]]))
    header = _pair(nlp, ["Radiografía:", "estudio", "decúbito"], tgt, rows, [(0, 1, "PRO")])
    assert [s.text for s in projector(header).spans["projected"]] == ["Chest X-ray:"]
    crossing = _pair(nlp, ["Radiografía:", "estudio", "decúbito"], tgt, rows, [(0, 3, "PRO")])
    assert [s.text for s in projector(crossing).spans["projected"]] == ["Chest X-ray: decubitus study"]


def test_a_long_source_span_is_not_cut_by_the_length_limit():
    """A 12-token source span whose words each align to one target word projects whole, even with
    max_length 10: the limit never goes below twice the source span's length."""
    nlp = spacy.blank("en")
    n = 12
    src = [f"s{i}" for i in range(n)] + ["fin"]
    tgt = ["before"] + [f"t{i}" for i in range(n)] + ["after"]
    rows = numpy.full((n + 2, n + 1), 0.01)
    for i in range(n):
        rows[i + 1, i] = 0.9
    rows[0, n] = rows[n + 1, n] = 0.9
    for max_length in (10, 30):
        projector = _projector(nlp, decoder="candidates", max_length=max_length, min_score=0.0)
        doc = projector(_pair(nlp, src, tgt, numpy.log(rows), [(0, n, "DIS")]))
        assert [(s.start, s.end) for s in doc.spans["projected"]] == [(1, n + 1)], max_length
        nlp.remove_pipe("span_projector")
