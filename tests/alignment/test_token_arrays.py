"""token_arrays: the array reads give what iterating the Doc's Tokens gives, and sentence segments
(document_prior.segments_of) are unchanged by reading them from arrays."""
import spacy
from spacy.tokens import Doc

from spacy_clinalign.alignment.document_prior import _looks_like_abbreviation, SENTENCE_END, segments_of
from spacy_clinalign.token_arrays import char_length, has_text, is_space_token, token_flags, token_texts

TEXTS = [
    "",
    "   ",
    "\n\n",
    "Fiebre alta. Dolor abdominal!  Sin náuseas?\n\nEl Dr. Pérez, i.e. el médico, lo vio.",
    "Patient seen by Dr. Smith at 10 a.m. He was discharged.\nNo fever",
    "中文。句子!结束",
    "One sentence without an end",
    "Ends here.",
]


def _segments_by_tokens(doc):
    """The Token-by-Token reading that segments_of replaced."""
    n, bounds, start = len(doc), [], 0
    if n == 0:
        return []
    for token in doc:
        text = token.text
        ends = (text.endswith(SENTENCE_END) and not _looks_like_abbreviation(text)) or (token.is_space and "\n" in text)
        if ends and token.i + 1 < n:
            bounds.append((start, token.i + 1))
            start = token.i + 1
    bounds.append((start, n))
    return bounds


def test_array_reads_match_the_tokens():
    nlp = spacy.blank("es")
    for text in TEXTS:
        doc = nlp(text)
        assert char_length(doc) == len(doc.text)
        assert is_space_token(doc).tolist() == [t.is_space for t in doc]
        assert has_text(doc) == any(not t.is_space for t in doc)
        assert token_texts(doc) == [t.text for t in doc]
        assert token_flags(doc, str.isupper).tolist() == [t.text.isupper() for t in doc]


def test_segments_match_the_token_by_token_rule():
    for lang in ("es", "en", "zh"):
        nlp = spacy.blank(lang)
        for text in TEXTS:
            doc = nlp(text)
            assert segments_of(doc) == _segments_by_tokens(doc), (lang, text)
    words = ["a", ".", "\n", "b", "Dr.", "c", "?"]
    doc = Doc(spacy.blank("en").vocab, words=words, spaces=[True] * len(words))
    assert segments_of(doc) == [(0, 2), (2, 3), (3, 7)]
