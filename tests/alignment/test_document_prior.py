"""The document prior: sentence alignment first (1-1, 1-2, 2-1, skips), word links only inside the band."""
import numpy
import spacy

from spacy_clinalign.alignment.document_prior import align_segments, band_mask, document_band, segments_of
from spacy_clinalign.alignment.matrix import PairScores
from spacy_clinalign.alignment.relink import alignment_from_scores


def synthetic_cosine(target_groups, source_groups, seed=0):
    """Tokens of target group g match tokens of source group g (cosine ~0.8); everything else ~0.3.
    Word i of a matching block is most similar to word i of the other side (a diagonal), so mutual
    argmax on the whole matrix would also link repeated words across far-apart segments."""
    rng = numpy.random.default_rng(seed)
    n_t, n_s = sum(target_groups), sum(source_groups)
    cos = 0.3 + 0.05 * rng.standard_normal((n_t, n_s))
    t0 = s0 = 0
    for gt, gs in zip(target_groups, source_groups):
        block = 0.7 + 0.05 * rng.standard_normal((gt, gs))
        for k in range(min(gt, gs)):
            block[k, k] = 0.95
        cos[t0:t0 + gt, s0:s0 + gs] = block
        t0, s0 = t0 + gt, s0 + gs
    return cos.astype("float32")


def test_far_apart_links_are_removed_on_a_three_segment_pair():
    segs = [(0, 6), (6, 12), (12, 18)]
    cos = synthetic_cosine([6, 6, 6], [6, 6, 6])
    # a word repeated in segments 1 and 3 ("the"): target token 1 looks like source token 13 too
    cos[1, 13] = cos[13, 1] = 0.99
    links = align_segments(cos, segs, segs)
    assert [(l.target, l.source) for l in links] == [((0, 6), (0, 6)), ((6, 12), (6, 12)), ((12, 18), (12, 18))]
    allowed = band_mask(18, 18, links, margin=0)
    pair = PairScores(cos, numpy.ones(18, "float32"), numpy.ones(18, "float32"))
    free = alignment_from_scores(pair, "argmax")
    banded = alignment_from_scores(pair, "argmax", allowed=allowed)
    assert (1, 13) in free.pairs() or (13, 1) in free.pairs()
    assert all(abs(i // 6 - j // 6) == 0 for i, j in banded.pairs())
    assert (1, 1) in banded.pairs() and (13, 13) in banded.pairs()


def test_a_sentence_split_in_translation_is_a_2_1_merge():
    source = [(0, 8), (8, 20), (20, 28)]
    target = [(0, 8), (8, 14), (14, 20), (20, 28)]  # source sentence 2 became two target sentences
    cos = synthetic_cosine([8, 12, 8], [8, 12, 8])
    links = align_segments(cos, target, source)
    assert [(l.target, l.source) for l in links] == [((0, 8), (0, 8)), ((8, 20), (8, 20)), ((20, 28), (20, 28))]
    # and the other way round: one target sentence for two source sentences is a 1-2 merge
    links = align_segments(cos.T.copy(), source, target)
    assert [(l.target, l.source) for l in links][1] == ((8, 20), (8, 20))


def test_a_dropped_paragraph_costs_only_itself():
    source = [(0, 6), (6, 12), (12, 18), (18, 24)]
    target = [(0, 6), (6, 12), (12, 18)]  # source segment 3 was not translated
    cos = synthetic_cosine([6, 6, 0, 6], [6, 6, 6, 6])  # target group for source 3 is empty
    links = align_segments(cos, target, source)
    aligned = [(l.target, l.source) for l in links if l.target[1] > l.target[0] and l.source[1] > l.source[0]]
    assert aligned == [((0, 6), (0, 6)), ((6, 12), (6, 12)), ((12, 18), (18, 24))]
    allowed = band_mask(18, 24, links, margin=0)
    assert not allowed[:6, 12:18].any()  # far sentences never reach the untranslated paragraph
    assert allowed[6:12, 12:18].all() and allowed[12:18, 12:18].all()  # its neighbours may, if it matches
    assert allowed.any(axis=0).all() and allowed.any(axis=1).all()  # every token can still be linked
    pair = PairScores(cos, numpy.ones(18, "float32"), numpy.ones(24, "float32"))
    banded = alignment_from_scores(pair, "argmax", allowed=allowed)
    assert (18, 12) in banded.pairs() and (0, 0) in banded.pairs()  # (source, target)
    assert not any(12 <= j < 18 for j, _ in banded.pairs())  # nothing matches the dropped paragraph


def test_segments_from_punctuation_and_from_a_sentencizer():
    nlp = spacy.blank("en")
    doc = nlp("The test was normal. Dr. Smith saw no fever! Then he left")
    assert [doc[a:b].text for a, b in segments_of(doc)] == [
        "The test was normal.", "Dr. Smith saw no fever!", "Then he left"]
    nlp.add_pipe("sentencizer")
    assert len(segments_of(nlp("One. Two. Three."))) == 3
    assert segments_of(nlp.make_doc("")) == []


def test_single_sentence_pairs_are_left_alone():
    nlp = spacy.blank("en")
    target, source = nlp("the house is small"), nlp("la casa es pequeña")
    assert document_band(numpy.zeros((4, 4), "float32"), target, source) is None


def test_joined_documents_shift_the_gold_links():
    from spacy_clinalign.scoring.gold_sets import joined_documents

    data = [(["a", "b"], ["x", "y"], [(0, 1, True)]), (["c"], ["z"], [(0, 0, False)]), (["d", "e"], ["w"], None)]
    docs = joined_documents(data, min_words=3, n_docs=2)
    assert docs == [(["a", "b", "c"], ["x", "y", "z"], [(0, 1, True), (2, 2, False)])]
    assert len(joined_documents(data, min_words=3, n_docs=2, repeat=3)) == 2


def test_joined_document_members_name_the_pairs_each_document_holds():
    from spacy_clinalign.scoring.gold_sets import joined_document_members

    data = [(["a", "b"], ["x", "y"], None), (["c"], ["z"], None), (["d", "e"], ["w"], None)]
    assert joined_document_members(data, min_words=3, n_docs=2) == [[0, 1]]
    assert joined_document_members(data, min_words=3, n_docs=2, repeat=3) == [[0, 1], [2, 0]]
