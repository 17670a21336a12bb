"""Whole documents against single sentences: AER of gold sentence pairs aligned one pair at a time, and
of the same sentences concatenated into documents of >= N words a side, with the document prior off and
on (issue 14). Prints one table; every token of the documents can still receive links.

"AER sent" is the sentence-level AER of exactly the pairs the documents hold (the documents use the first
pairs of a set only, and the rest of a set may be easier or harder); "AER sent, whole set" is all pairs.

    python bench/long_documents.py [--encoder clinalign-e5-small] [--layer 8] [--sets en-fr ro-en]
                                   [--words 2000] [--docs 2] [--limit 0]
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alignment"


def aer(alignments, data) -> float:
    from spacy_clinalign.io.readers import gold_alignment
    from spacy_clinalign.scoring.alignment import AlignmentCounts

    counts = AlignmentCounts()
    for alignment, (s, t, g) in zip(alignments, data):
        counts.add_gold(set(alignment.pairs()), gold_alignment(len(t), len(s), g))
    return 100 * counts.scores("")["aer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="clinalign-e5-small")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--sets", nargs="+", default=["en-fr", "ro-en"])
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--docs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="sentence pairs per set (0 = all)")
    args = parser.parse_args()

    from spacy_clinalign.alignment.document_prior import document_band
    from spacy_clinalign.alignment.relink import alignment_from_scores, relink
    from spacy_clinalign.io.alignment_files import read_gold_set
    from spacy_clinalign.pipelines import align_word_pairs, load_aligner
    from spacy_clinalign.scoring.gold_sets import GOLD_SETS, joined_document_members, joined_documents

    nlp = load_aligner(args.encoder, layer=args.layer)
    aligner = nlp.get_pipe("clinical_aligner")
    aligner.cfg["store_matrix"] = True
    rows = []
    for name in args.sets:
        spec = GOLD_SETS[name]
        data = read_gold_set(DATA / spec.path, DATA / spec.gold if spec.gold else None, spec.one_based)
        data = data[: args.limit or None]
        base = {k: aligner.cfg[k] for k in ("threshold", "temperature", "sinkhorn_iterations")}
        sentences = align_word_pairs(nlp, [(s, t) for s, t, _ in data], progress=False)
        long_data = joined_documents(data, args.words, args.docs)
        members = sorted({k for doc in joined_document_members(data, args.words, args.docs) for k in doc})
        start = time.perf_counter()
        aligner.cfg["document_prior"] = False
        raw = align_word_pairs(nlp, [(s, t) for s, t, _ in long_data], batch_size=1, progress=False)
        encode_s = (time.perf_counter() - start) / max(1, len(long_data))
        start = time.perf_counter()
        bands = [document_band(d._.alignment.matrix, d, d._.source, aligner.cfg["prior_margin"],
                               aligner.cfg["prior_skip_z"]) for d in raw]
        prior_s = (time.perf_counter() - start) / max(1, len(long_data))
        reachable = min((b.any(axis=1).mean() for b in bands if b is not None), default=1.0)
        for method in ("argmax", "itermax"):
            banded = [alignment_from_scores(d._.alignment.scores(), method, **base, target=d, source=d._.source,
                                            allowed=band) for d, band in zip(raw, bands)]
            rows.append({
                "set": name, "method": method, "sentences": len(data),
                "words": f"{sum(len(t) for _, t, _ in long_data) // max(1, len(long_data))}",
                "aer_sent_all": aer([relink(d, method, **base) for d in sentences], data),
                "aer_sent": aer([relink(sentences[k], method, **base) for k in members], [data[k] for k in members]),
                "pairs": f"{len(members)}/{len(data)}",
                "aer_doc_off": aer([relink(d, method, **base) for d in raw], long_data),
                "aer_doc_on": aer(banded, long_data), "secs": encode_s + prior_s, "prior_s": prior_s,
                "rows_reachable": 100 * reachable,
            })
            print(f"done {name} {method}", file=sys.stderr)
    print(f"encoder {args.encoder} layer {args.layer}; documents: gold sentences concatenated to >= {args.words} "
          f"words a side, {args.docs} per set\n")
    print(f"{'set':<6} {'method':<8} {'pairs':>8} {'words/doc':>9} {'AER sent':>9} {'AER doc, no prior':>18} "
          f"{'AER doc, prior':>15} {'doc - sent':>11} {'AER sent, whole set':>20} {'s/doc':>7} {'prior s/doc':>12} "
          f"{'rows linkable %':>16}")
    for r in rows:
        print(f"{r['set']:<6} {r['method']:<8} {r['pairs']:>8} {r['words']:>9} {r['aer_sent']:>9.1f} "
              f"{r['aer_doc_off']:>18.1f} {r['aer_doc_on']:>15.1f} {r['aer_doc_on'] - r['aer_sent']:>+11.1f} "
              f"{r['aer_sent_all']:>20.1f} {r['secs']:>7.1f} {r['prior_s']:>12.2f} {r['rows_reachable']:>16.1f}")


if __name__ == "__main__":
    main()
