"""Training only the upper encoder layers, with the frozen lower layers' output cached (issue 14 item 3)."""
import numpy
import pytest
import spacy
import torch

from spacy_clinalign.io.readers import make_pair_example
from spacy_clinalign.models.frozen_layers import FrozenLowerLayers
from spacy_clinalign.models.safe_shim import SafeHFShim
from tests.conftest import aligner_config, encoder_with_dropout

PAIRS = [
    ("la casa blanca".split(), "the white house".split(), [(0, 0), (1, 2), (2, 1)]),
    ("dolor abdominal agudo en el lado derecho".split(), "acute abdominal pain on the right side".split(),
     [(0, 2), (1, 1), (2, 0)]),
    ("fiebre alta".split(), "high fever".split(), [(0, 1), (1, 0)]),
]


def frozen_aligner(encoder, frozen_layers, cache_size):
    nlp = spacy.blank("en")
    config = aligner_config(encoder, document_prior=False)
    config["model"].update(frozen_layers=frozen_layers, frozen_cache_size=cache_size)
    nlp.add_pipe("clinical_aligner", config=config)
    examples = [make_pair_example(nlp.vocab, s, t, [(j, i, True) for j, i in links]) for s, t, links in PAIRS]
    optimizer = nlp.initialize(lambda: examples)
    return nlp, examples, optimizer


def shim(nlp):
    return next(s for node in nlp.get_pipe("clinical_aligner").model.walk() for s in node.shims
                if isinstance(s, SafeHFShim))


def hf_model(nlp):
    return shim(nlp)._model


def gradients(nlp, examples):
    """Trainable encoder parameters' gradients of one loss evaluation (nothing is updated)."""
    aligner = nlp.get_pipe("clinical_aligner")
    model = hf_model(nlp)
    model.zero_grad(set_to_none=True)
    docs = [eg.predicted for eg in examples] + [eg.predicted._.source for eg in examples]
    scores, backprop = aligner.model.begin_update(docs)
    _, d_scores = aligner.get_loss(examples, scores)
    backprop(d_scores)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def encoder(tiny_encoder, tmp_path_factory):
    # no dropout, so the trained upper layer is deterministic and two paths can be compared exactly
    return encoder_with_dropout(tiny_encoder, tmp_path_factory.mktemp("frozen") / "enc", 0.0)


def test_caching_gives_the_same_gradients_as_the_uncached_path(encoder):
    uncached, examples, _ = frozen_aligner(encoder, 1, 0)
    cached, _, _ = frozen_aligner(encoder, 1, 100)
    cached.get_pipe("clinical_aligner").model.from_bytes(uncached.get_pipe("clinical_aligner").model.to_bytes())
    cache = shim(cached).frozen
    reference = gradients(uncached, examples)
    first = gradients(cached, examples)  # fills the cache
    assert cache.misses > 0 and cache.hits == 0 and len(cache) > 0
    second = gradients(cached, examples)  # reads every window from the cache
    assert cache.hits > 0
    assert set(reference) == set(first) == set(second)
    assert all(name.startswith("encoder.layer.1.") for name in reference)  # only the upper layer trains
    for name in reference:
        torch.testing.assert_close(first[name], reference[name], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(second[name], reference[name], rtol=1e-4, atol=1e-6)


def test_a_window_is_found_in_the_cache_whatever_batch_it_comes_in(encoder):
    """spaCy reshuffles batches every epoch, so a window comes back padded to another length."""
    uncached, examples, _ = frozen_aligner(encoder, 1, 0)
    cached, _, _ = frozen_aligner(encoder, 1, 100)
    cached.get_pipe("clinical_aligner").model.from_bytes(uncached.get_pipe("clinical_aligner").model.to_bytes())
    cache = shim(cached).frozen
    gradients(cached, examples)  # the long pair pads every row of this batch
    misses = cache.misses
    short = [examples[0], examples[2]]  # the same windows, padded to a shorter length
    second = gradients(cached, short)
    assert cache.misses == misses and cache.hits > 0
    reference = gradients(uncached, short)
    for name in reference:
        torch.testing.assert_close(second[name], reference[name], rtol=1e-4, atol=1e-6)


def test_training_changes_only_the_upper_layers(tiny_encoder):
    nlp, examples, optimizer = frozen_aligner(tiny_encoder, 1, 100)
    before = {k: v.clone() for k, v in hf_model(nlp).state_dict().items()}
    optimizer.learn_rate = 1e-3
    losses = [nlp.update(examples, sgd=optimizer, drop=0.1)["clinical_aligner"] for _ in range(8)]
    assert losses[-1] < losses[0]
    after = hf_model(nlp).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed)
    assert shim(nlp).frozen.hits > 0  # later steps read the frozen output from the cache


def test_inference_and_saved_pipelines_are_unchanged(tiny_encoder, tmp_path):
    nlp, examples, _ = frozen_aligner(tiny_encoder, 1, 100)
    plain, _, _ = frozen_aligner(tiny_encoder, 0, 0)
    plain.get_pipe("clinical_aligner").model.from_bytes(nlp.get_pipe("clinical_aligner").model.to_bytes())
    doc = make_pair_example(nlp.vocab, *PAIRS[1][:2], None).predicted
    a, b = nlp(doc.copy()), plain(doc.copy())
    numpy.testing.assert_allclose(a._.alignment.scores().dot(), b._.alignment.scores().dot(), rtol=1e-5)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert shim(loaded).frozen.n_layers == 1 and len(shim(loaded).frozen) == 0


def test_bad_settings_are_refused(tiny_encoder):
    with pytest.raises(ValueError, match=r"frozen_layers \(2\) must be below layer \(2\)"):
        frozen_aligner(tiny_encoder, 2, 0)
    with pytest.raises(ValueError, match="must be >= 0"):
        FrozenLowerLayers(-1)
    with pytest.raises(ValueError, match="BERT-like encoder"):
        FrozenLowerLayers(1).check(torch.nn.Linear(2, 2))


def test_cache_keeps_at_most_its_size(encoder):
    nlp, examples, _ = frozen_aligner(encoder, 1, 2)
    gradients(nlp, examples)
    assert len(shim(nlp).frozen) == 2
