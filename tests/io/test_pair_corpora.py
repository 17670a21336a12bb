"""spacy-clinalign.PairCorpora.v1: teacher DocBins, binaryalign gold and talp gold as one training stream,
with evaluation sentences kept out."""
import json

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_clinalign.io.readers import create_pair_corpora_reader
from spacy_clinalign.pairs import pair_from_words


def test_mixed_corpora_and_excluded_evaluation_sentences(tmp_path):
    nlp = spacy.blank("en")
    teacher_doc = pair_from_words(nlp.vocab, ["fiebre", "alta"], ["high", "fever"])
    teacher_doc._.teacher = numpy.eye(2, dtype="float16")
    db = DocBin(store_user_data=True)
    db.add(teacher_doc)
    (tmp_path / "teacher.spacy").write_bytes(db.to_bytes())
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(r) for r in [
        {"src_words": ["la", "casa"], "tgt_words": ["the", "house"], "alignment": [[0, 0], [1, 1]]},
        {"src_words": ["el", "perro"], "tgt_words": ["The", "dog"], "alignment": [[0, 0], [1, 1]]},
    ]) + "\n", encoding="utf8")
    parallel, talp = tmp_path / "p.src-tgt", tmp_path / "p.gold"
    parallel.write_text("tos seca ||| dry cough\n", encoding="utf8")
    talp.write_text("1-2 2-1\n", encoding="utf8")
    evaluation = tmp_path / "eval.src-tgt"
    evaluation.write_text("un gato ||| the dog\n", encoding="utf8")  # shares "the dog" (any case) with gold.jsonl

    read = create_pair_corpora_reader([str(tmp_path / "teacher.spacy"), str(gold), f"{parallel}|{talp}"],
                                      exclude_sentences_of=[str(evaluation)])
    examples = list(read(nlp))
    assert [eg.reference.text.strip() for eg in examples] == ["high fever", "the house", "dry cough"]
    assert examples[0].reference._.teacher.shape == (2, 2)
    assert examples[1].reference._.alignment.method == "gold"
    assert sorted(examples[2].reference._.alignment.pairs()) == [(0, 1), (1, 0)]
    assert len(list(create_pair_corpora_reader([str(gold)])(nlp))) == 2
    with pytest.raises(ValueError, match="`paths` is empty"):
        create_pair_corpora_reader([])
