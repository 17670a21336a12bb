"""Sentence windows: no window crosses a sentence boundary, long sentences are strided, every token is
covered, and the aligner uses them by default."""
import pytest
import spacy

from spacy_clinalign.models.span_getters import configure_sentence_spans
from spacy_clinalign.pipeline.clinical_aligner import DEFAULT_ALIGNER_MODEL


def test_windows_stay_inside_sentences_and_cover_every_token():
    nlp = spacy.blank("en")
    long_sentence = " ".join(f"w{i}" for i in range(25)) + "."
    doc = nlp(f"The test was normal. {long_sentence} No fever!")
    spans = configure_sentence_spans(window=10, stride=8)([doc, nlp.make_doc("")])
    assert spans[1] == []
    texts = [s.text for s in spans[0]]
    assert texts[0] == "The test was normal." and texts[-1] == "No fever!"
    boundaries = {5, 31}  # sentence starts of the 2nd and 3rd sentence
    for span in spans[0]:
        assert not any(span.start < b < span.end for b in boundaries), span.text
        assert len(span) <= 10
    covered = {i for span in spans[0] for i in range(span.start, span.end)}
    assert covered == set(range(len(doc)))
    assert len([s for s in spans[0] if 5 <= s.start < 31]) == 3  # 26 tokens, window 10, stride 8


def test_bad_window_settings_are_errors():
    with pytest.raises(ValueError, match="stride <= window"):
        configure_sentence_spans(window=4, stride=8)


def test_the_aligner_reads_sentence_windows_by_default():
    assert DEFAULT_ALIGNER_MODEL["get_spans"]["@span_getters"] == "spacy-clinalign.sentence_spans.v1"
