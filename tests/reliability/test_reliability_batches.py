"""One source Doc shared by two translations in one batch, and the same pair twice: both align, each
as it would alone."""

import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_clinalign import make_pair
from tests.conftest import aligner_config, encoder_with_dropout

SRC = "La prueba reveló una deficiencia de calcio y potasio , probablemente resultado de su dieta ."
TGT_EN = "The test revealed a calcium and potassium deficiency , probably a result of her diet ."
TGT_IT = "Il test ha rivelato una carenza di calcio e potassio ."


@pytest.fixture(scope="module")
def nlp(tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder))
    nlp.initialize()
    return nlp


def _same(a, b):
    assert a.links.tolist() == b.links.tolist()
    numpy.testing.assert_allclose(a.matrix, b.matrix, atol=1e-5)


def test_one_source_shared_by_two_targets_in_one_batch(nlp):
    source = spacy.blank("es")(SRC)
    alone = [nlp(make_pair(spacy.blank("es")(SRC), t, nlp))._.alignment for t in (TGT_EN, TGT_IT)]
    docs = list(nlp.pipe([make_pair(source, TGT_EN, nlp), make_pair(source, TGT_IT, nlp)], batch_size=8))
    assert all(d._.source is source for d in docs)
    for doc, expected in zip(docs, alone):
        _same(doc._.alignment, expected)


def test_the_same_pair_twice_in_one_batch(nlp):
    pair = make_pair(spacy.blank("es")(SRC), TGT_EN, nlp)
    expected = nlp(make_pair(spacy.blank("es")(SRC), TGT_EN, nlp))._.alignment
    docs = list(nlp.pipe([pair, pair], batch_size=8))
    for doc in docs:
        _same(doc._.alignment, expected)


def test_a_target_that_is_its_own_source(nlp):
    doc = nlp.make_doc(TGT_EN)
    doc._.source = doc
    a = nlp(doc)._.alignment
    assert a.matrix.shape == (len(doc), len(doc))
    numpy.testing.assert_allclose(numpy.diag(a.matrix), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def no_dropout_encoder(tiny_encoder, tmp_path_factory):
    return encoder_with_dropout(tiny_encoder, tmp_path_factory.mktemp("no_dropout_bert") / "encoder", 0.0)


def test_training_with_a_shared_source_matches_two_separate_sources(no_dropout_encoder):
    """The gradient of a Doc used twice is the sum of both uses: one update over a shared source equals
    the update over two copies of it."""
    def updated_loss(shared):
        fresh = spacy.blank("en")
        fresh.add_pipe("clinical_aligner", config=aligner_config(no_dropout_encoder))
        optimizer = fresh.initialize()
        source = spacy.blank("es")(SRC)
        examples = []
        for tgt in (TGT_EN, TGT_IT):
            src = source if shared else spacy.blank("es")(SRC)
            pred = make_pair(src, tgt, fresh)
            ref = make_pair(src, tgt, fresh)
            ref._.teacher = numpy.eye(len(pred), len(src), dtype="float32")
            examples.append(Example(pred, ref))
        # the component directly: Language.update copies each Doc, so the source would not be shared
        losses = fresh.get_pipe("clinical_aligner").update(examples, sgd=optimizer, drop=0.0)
        after = fresh.get_pipe("clinical_aligner").model.layers[0].layers[0].shims[0]._model
        return losses["clinical_aligner"], [p.detach().clone() for p in after.parameters()]

    loss_shared, params_shared = updated_loss(True)
    loss_copies, params_copies = updated_loss(False)
    assert loss_shared == pytest.approx(loss_copies, rel=1e-5)
    for a, b in zip(params_shared, params_copies):
        numpy.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
