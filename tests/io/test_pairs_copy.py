"""Copying a pair Doc (spaCy's nlp.update and nlp.evaluate copy every example) copies its source with
Doc.copy(), never by pickling the vocab, and keeps the copy independent."""
import copy

import spacy

from spacy_clinalign.pairs import pair_from_words


def test_copy_of_a_pair_copies_the_source_without_pickling_the_vocab():
    nlp = spacy.blank("en")
    doc = pair_from_words(nlp.vocab, ["la", "casa"], ["the", "house"])
    for clone in (doc.copy(), copy.deepcopy(doc)):
        assert clone._.source is not doc._.source
        assert [t.text for t in clone._.source] == ["la", "casa"]
    # a pickled-and-restored vocab would be a new Vocab object
    assert doc.copy()._.source.vocab is nlp.vocab
    clone = doc.copy()
    clone._.source.user_data["x"] = 1
    assert "x" not in doc._.source.user_data


def test_source_must_be_a_doc():
    import pytest

    nlp = spacy.blank("en")
    doc = nlp("the house")
    with pytest.raises(TypeError, match="must be a spaCy Doc"):
        doc._.source = "la casa"
    doc._.source = None
    assert doc._.source is None
