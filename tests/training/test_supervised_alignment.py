"""Supervised fine-tuning from gold links (issue 14): the gold-link loss, mixed with distillation, in the
same `nlp.update` / `spacy train` machinery."""
import numpy
import pytest
import spacy
import torch

from spacy_clinalign.alignment.losses import gold_link_nll
from spacy_clinalign.alignment.relink import relink
from spacy_clinalign.io.alignment_files import AlignmentFormatError, read_gold_set
from spacy_clinalign.io.readers import create_parallel_corpus_reader, make_pair_example
from spacy_clinalign.scoring.alignment import AlignmentCounts
from tests.conftest import aligner_config

# Four pairs whose gold links are NOT the diagonal, so position alone cannot reach AER 0.
PAIRS = [
    ("la casa blanca".split(), "the white house".split(), [(0, 0), (1, 2), (2, 1)]),
    ("dolor abdominal agudo".split(), "acute abdominal pain".split(), [(0, 2), (1, 1), (2, 0)]),
    ("fiebre alta".split(), "high fever".split(), [(0, 1), (1, 0)]),
    ("prueba normal de sangre".split(), "normal blood test".split(), [(0, 2), (1, 0), (3, 1)]),
]


def test_gold_link_loss_is_low_exactly_when_the_gold_cells_win():
    gold = torch.zeros(2, 2, dtype=torch.bool)
    gold[0, 1] = gold[1, 0] = True
    right = torch.tensor([[0.1, 0.9], [0.9, 0.1]])
    wrong = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    assert gold_link_nll(right, gold) < 0.01 < gold_link_nll(wrong, gold)
    assert float(gold_link_nll(right, torch.zeros(2, 2, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match="differ"):
        gold_link_nll(right, torch.zeros(3, 2, dtype=torch.bool))


def test_supervised_loss_overfits_four_gold_pairs_to_aer_zero(tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, document_prior=False))
    examples = [make_pair_example(nlp.vocab, s, t, [(j, i, True) for j, i in links]) for s, t, links in PAIRS]

    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 2e-3
    losses = [nlp.update(examples, sgd=optimizer, drop=0.0)["clinical_aligner"] for _ in range(60)]
    assert losses[-1] < 0.1 * losses[0]
    predicted = [make_pair_example(nlp.vocab, s, t, None).predicted for s, t, _ in PAIRS]
    counts = AlignmentCounts()
    for doc, (_, _, links) in zip(nlp.pipe(predicted), PAIRS):
        gold = {(j, i) for j, i in links}
        counts.add(set(relink(doc, "argmax").pairs()), gold, gold)
    assert counts.scores("")["aer"] == 0.0


def test_distillation_and_supervision_mix_in_one_batch(tiny_encoder):
    nlp = spacy.blank("en")
    nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, supervised_weight=0.5))
    gold_eg = make_pair_example(nlp.vocab, *PAIRS[0][:2], [(j, i, True) for j, i in PAIRS[0][2]])
    teacher_eg = make_pair_example(nlp.vocab, *PAIRS[2][:2], None)
    teacher_eg.reference._.teacher = numpy.eye(2, dtype="float16")
    nlp.initialize(lambda: [gold_eg, teacher_eg])
    aligner = nlp.get_pipe("clinical_aligner")
    scores, _ = aligner.model.begin_update([gold_eg.predicted, teacher_eg.predicted,
                                            gold_eg.predicted._.source, teacher_eg.predicted._.source])
    both, _ = aligner.get_loss([gold_eg, teacher_eg], scores)
    aligner.cfg["supervised_weight"] = 0.0
    distill_only, _ = aligner.get_loss([gold_eg, teacher_eg], scores)
    assert both > distill_only > 0.0
    with pytest.raises(ValueError, match="must be >= 0, not both 0"):
        spacy.blank("en").add_pipe("clinical_aligner",
                                   config=aligner_config(tiny_encoder, distill_weight=0.0, supervised_weight=0.0))


def test_gold_links_outside_their_sentence_name_the_file_and_line(tmp_path):
    jsonl = tmp_path / "gold.jsonl"
    jsonl.write_text('{"src_words": ["a", "b"], "tgt_words": ["c"], "alignment": [[0, 0]]}\n'
                     '{"src_words": ["a", "b"], "tgt_words": ["c"], "alignment": [[1, 3]]}\n', encoding="utf8")
    with pytest.raises(AlignmentFormatError, match=r"gold\.jsonl:2: link 1-3 is outside the pair"):
        read_gold_set(jsonl)
    parallel, talp = tmp_path / "p.src-tgt", tmp_path / "p.gold"
    parallel.write_text("a b ||| c d\n", encoding="utf8")
    talp.write_text("1-1 3-2\n", encoding="utf8")
    with pytest.raises(AlignmentFormatError, match=r"p\.gold:1: link '3-2' is outside the sentence pair"):
        list(create_parallel_corpus_reader(parallel, talp)(spacy.blank("en")))


def test_supervised_config_reads_every_training_file_separately():
    """thinc merges a list's leading "${var}" item with the next one; the config keeps the teacher last."""
    from pathlib import Path

    from thinc.api import Config

    config = Config().from_disk(Path(__file__).parents[2] / "configs/aligner_supervised.cfg",
                                overrides={"paths.teacher": "corpus/teacher.spacy", "paths.data": "data"})
    paths = config["corpora"]["train"]["paths"]
    assert paths == ["data/binaryalign/train/en-cz/czenali.jsonl", "data/binaryalign/train/en-sv/swedish.jsonl",
                     "data/binaryalign/train/en-es/es_golden.jsonl", "corpus/teacher.spacy"]
