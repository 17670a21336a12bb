import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy

from spacy_clinalign.cli import main
from spacy_clinalign.io.readers import create_parallel_corpus_reader
from tests.conftest import aligner_config

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    ("la casa es pequeña .", "the house is small ."),
    ("dolor abdominal y fiebre .", "abdominal pain and fever ."),
    ("paciente de 67 años con neumonía .", "patient aged 67 with pneumonia ."),
    ("se realizó una tomografía de tórax .", "a chest tomography was performed ."),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("teacher")
    par = folder / "pairs.src-tgt"
    par.write_text("".join(f"{s} ||| {t}\n" for s, t in PAIRS), encoding="utf8")
    gold = folder / "pairs.gold"
    gold.write_text("1-1 2-2 3-3 4-4 5-5\n1-2 2-1 3-3 4-4 5-5\n1-1 3-3 4-3 5-4 6-5 7-6\n1-4 2-5 3-1 4-3 6-2 7-6\n", encoding="utf8")
    out = folder / "teacher.spacy"
    main(["build-teacher", str(par), str(out), "--encoder", str(tiny_encoder), "--layer", "2", "--batch-size", "3"])
    return par, gold, out


def test_teacher_corpus_round_trip(corpus):
    _, _, out = corpus
    examples = list(create_parallel_corpus_reader(out)(spacy.blank("en")))
    assert len(examples) == len(PAIRS)
    for eg, (src, tgt) in zip(examples, PAIRS):
        teacher = eg.reference._.teacher
        assert teacher.shape == (len(tgt.split()), len(src.split()))
        numpy.testing.assert_allclose(teacher.astype("float32").sum(axis=1), 1.0, atol=1e-2)
        assert [t.text for t in eg.predicted._.source] == src.split()


def _train(nlp, examples, steps):
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 1e-3
    losses = []
    for _ in range(steps):
        losses.append(nlp.update(examples, sgd=optimizer, drop=0.0)["clinical_aligner"])
    return losses


def test_update_reaches_transformer_weights_and_lowers_the_loss(corpus, tiny_encoder):
    _, _, out = corpus
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder))
    examples = list(create_parallel_corpus_reader(out)(nlp))
    aligner = nlp.get_pipe("clinical_aligner")
    nlp.initialize(lambda: examples)
    transformer = aligner.model.layers[0].transformer
    before = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    losses = _train(nlp, examples, 30)
    after = transformer.state_dict()
    changed = [k for k in before if not numpy.allclose(before[k].numpy(), after[k].numpy())]
    assert any("encoder.layer.0" in k for k in changed) and any("embeddings" in k for k in changed)
    assert losses[-1] < 0.5 * losses[0]


def test_update_without_teacher_is_a_clear_error(tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder))
    nlp.initialize()
    from spacy_clinalign.io.readers import make_pair_example

    eg = make_pair_example(nlp.vocab, ["a", "b"], ["c", "d"], None)
    with pytest.raises(ValueError, match="no teacher matrix.*build-teacher"):
        nlp.update([eg])
    eg.reference._.teacher = numpy.ones((3, 3), dtype="float16")
    with pytest.raises(ValueError, match=r"teacher matrix \(3, 3\) does not fit"):
        nlp.update([eg])


def test_spacy_train_runs_end_to_end(tmp_path, corpus, tiny_encoder):
    _, gold, out = corpus
    par = corpus[0]
    cmd = [
        sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "aligner.cfg"),
        "--output", str(tmp_path / "model"),
        "--paths.train", str(out), "--paths.dev", str(par), "--paths.dev_gold", str(gold),
        "--paths.encoder", str(tiny_encoder), "--paths.layer", "2", "--paths.frozen_layers", "1",
        "--training.max_steps", "6", "--training.eval_frequency", "3",
        "--training.optimizer.learn_rate.warmup_steps", "1",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert "ALIGN_F" in result.stdout.upper() or "align_f" in result.stdout
    nlp = spacy.load(tmp_path / "model" / "model-last")
    src, tgt = PAIRS[0]
    from spacy_clinalign.pairs import pair_from_words

    doc = nlp(pair_from_words(nlp.vocab, src.split(), tgt.split()))
    assert len(doc._.alignment) > 0


def test_span_aware_bias_moves_teacher_mass_into_mapped_spans(tmp_path, tiny_encoder):
    src_dir, tgt_dir = tmp_path / "es", tmp_path / "en"
    src_dir.mkdir()
    tgt_dir.mkdir()
    (src_dir / "d1.txt").write_text("Dolor abdominal y fiebre alta.", encoding="utf8")
    (tgt_dir / "d1.txt").write_text("High fever and abdominal pain.", encoding="utf8")
    spans = tmp_path / "spans.jsonl"
    # "fiebre alta" (18-29) <-> "High fever" (0-10)
    spans.write_text('{"doc": "d1", "source": [18, 29], "target": [0, 10]}\n', encoding="utf8")
    plain, biased = tmp_path / "plain.spacy", tmp_path / "biased.spacy"
    base = ["build-teacher", str(src_dir), "--target", str(tgt_dir), "--encoder", str(tiny_encoder), "--layer", "2"]
    main(base[:2] + [str(plain)] + base[2:])
    main(base[:2] + [str(biased)] + base[2:] + ["--spans", str(spans), "--span-bias", "5.0"])
    t_plain = next(iter(create_parallel_corpus_reader(plain)(spacy.blank("en")))).reference._.teacher.astype("float32")
    t_biased = next(iter(create_parallel_corpus_reader(biased)(spacy.blank("en")))).reference._.teacher.astype("float32")
    # target tokens 0-1 ("High fever") x source tokens 3-4 ("fiebre alta")
    assert t_biased[0:2, 3:5].sum() > t_plain[0:2, 3:5].sum() + 0.5
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc": "nope.txt", "source": [0, 5], "target": [0, 4]}\n', encoding="utf8")
    with pytest.raises(SystemExit, match=r"bad\.jsonl:1: bad span mapping"):
        main(base[:2] + [str(tmp_path / "x.spacy")] + base[2:] + ["--spans", str(bad), "--span-bias", "1"])
