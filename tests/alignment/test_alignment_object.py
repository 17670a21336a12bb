import numpy
import pytest
import spacy
from spacy.tokens import DocBin

import spacy_clinalign
from spacy_clinalign import Alignment, make_pair
from spacy_clinalign.alignment.matrix import PairScores


def test_links_lookups_and_pharaoh():
    a = Alignment(3, 4, links=[(2, 3), (0, 0), (0, 1)], probs=[0.5, 0.9, 0.8])
    assert a.links.tolist() == [[0, 0], [0, 1], [2, 3]]  # sorted by target, then source
    assert a.sources_of(0) == [0, 1] and a.sources_of(1) == []
    assert a.targets_of(3) == [2]
    assert a.to_pharaoh() == "0-0 1-0 3-2"
    assert a.to_pharaoh(one_based=True) == "1-1 2-1 4-3"
    assert a.to_pharaoh(probs=True).split()[0] == "0-0:0.9000"
    gold = Alignment(2, 2, links=[(0, 0), (1, 1)], sure=[True, False])
    assert gold.to_pharaoh() == "0-0 1p1"


def test_invalid_alignments_are_rejected():
    with pytest.raises(ValueError, match="outside a 2 x 2 pair"):
        Alignment(2, 2, links=[(0, 2)])
    with pytest.raises(ValueError, match="probabilities"):
        Alignment(2, 2, links=[(0, 1)], probs=[0.1, 0.2])
    with pytest.raises(ValueError, match="matrix has shape"):
        Alignment(2, 2, matrix=numpy.zeros((3, 2)))


def test_from_mask():
    mask = numpy.array([[True, False], [False, True]])
    probs = numpy.array([[0.7, 0.1], [0.2, 0.6]])
    scores = PairScores(probs.astype("float32"), numpy.array([2.0, 1.0]), numpy.array([1.0, 3.0]))
    a = Alignment.from_mask(mask, probs, scores=scores, method="argmax")
    assert a.links.tolist() == [[0, 0], [1, 1]]
    numpy.testing.assert_allclose(a.probs, [0.7, 0.6])
    numpy.testing.assert_allclose(a.scores().dot(), [[1.4, 0.6], [0.2, 1.8]], rtol=1e-6)
    with pytest.raises(ValueError, match="store_matrix=False"):
        Alignment.from_mask(mask, probs).scores()


def test_pair_and_alignment_survive_docbin():
    nlp = spacy.blank("en")
    src = spacy.blank("es")("La prueba reveló una deficiencia.")
    doc = make_pair(src, "The test revealed a deficiency.", nlp)
    doc._.alignment = Alignment(len(doc), len(src), links=[(0, 0), (1, 1)], probs=[0.9, 0.8],
                                matrix=numpy.eye(len(doc), len(src), dtype="float32"), method="argmax",
                                norms=(numpy.ones(len(doc)), numpy.full(len(src), 2.0)))
    data = DocBin(docs=[doc], store_user_data=True).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(nlp.vocab))[0]
    assert restored._.source.text == src.text
    assert [t.text for t in restored._.source] == [t.text for t in src]
    assert restored._.alignment == doc._.alignment
    numpy.testing.assert_allclose(restored._.alignment.norms[1], 2.0)


def test_make_pair_rejects_wrong_types():
    nlp = spacy.blank("en")
    with pytest.raises(TypeError, match="source must be a spaCy Doc"):
        make_pair("not a doc", "text", nlp)
    with pytest.raises(TypeError, match="target must be a str or a spaCy Doc"):
        make_pair(nlp("x"), 42, nlp)
    assert spacy_clinalign.__version__
