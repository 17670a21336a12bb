"""Link re-extraction is a public function: the same links as the component for its own settings, other
methods without touching the component."""
import spacy

from spacy_clinalign.alignment.relink import relink
from spacy_clinalign.pairs import pair_from_words
from tests.conftest import aligner_config


def test_relink_matches_the_component_and_leaves_it_alone(tiny_encoder):
    nlp = spacy.blank("xx")
    aligner = nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder))
    nlp.initialize()
    pairs = [("la prueba reveló una deficiencia".split(), "the test revealed a deficiency".split()),
             ("fiebre y dolor".split(), "fever and pain".split())]
    docs = list(nlp.pipe(pair_from_words(nlp.vocab, s, t) for s, t in pairs))
    cfg = dict(aligner.cfg)
    settings = {k: cfg[k] for k in ("threshold", "temperature", "sinkhorn_iterations")}
    for doc in docs:
        same = relink(doc, cfg["method"], **settings)
        assert same.pairs() == doc._.alignment.pairs()
        other = relink(doc, "threshold", threshold=0.0, temperature=1.0)
        assert other.method == "threshold" and len(other) >= len(doc._.alignment)
        assert doc._.alignment.method == cfg["method"]
    assert aligner.cfg == cfg
