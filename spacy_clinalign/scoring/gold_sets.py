"""AER of an aligner on the public gold sets, per extraction method, next to the published figures."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..alignment.relink import relink
from ..io.alignment_files import read_gold_set
from ..io.readers import gold_alignment
from ..io.text_lines import check_limit
from ..pipelines import align_word_pairs
from .alignment import AlignmentCounts


@dataclass
class GoldSet:
    name: str
    path: str  # relative to the alignment data folder
    gold: Optional[str] = None
    one_based: bool = True
    published: Dict[str, float] = field(default_factory=dict)  # system -> AER (%)


# Published AERs from ../shared/data/README.md (SimAlign and awesome-align use mBERT).
GOLD_SETS = {
    s.name: s
    for s in [
        GoldSet("en-fr", "awesome-align/enfr.src-tgt", "awesome-align/enfr.gold",
                published={"SimAlign mBERT": 7.6, "awesome-align mBERT": 5.6, "awesome-align fine-tuned": 4.1}),
        GoldSet("ro-en", "awesome-align/roen.src-tgt", "awesome-align/roen.gold",
                published={"SimAlign mBERT": 27.2, "awesome-align mBERT": 27.9, "awesome-align fine-tuned": 22.6}),
        GoldSet("ja-en", "awesome-align/jaen.src-tgt", "awesome-align/jaen.gold",
                published={"SimAlign mBERT": 46.6, "awesome-align mBERT": 45.6, "awesome-align fine-tuned": 37.4}),
        GoldSet("zh-en", "awesome-align/zhen.src-tgt", "awesome-align/zhen.gold",
                published={"SimAlign mBERT": 21.6, "awesome-align mBERT": 18.1, "awesome-align fine-tuned": 13.4}),
        GoldSet("en-es", "binaryalign/valid/en-es/es_golden.jsonl"),
        GoldSet("en-cs", "binaryalign/valid/en-cz/czenali.jsonl"),
        GoldSet("en-sv", "binaryalign/valid/en-sv/swedish.jsonl"),
        GoldSet("en-ro", "binaryalign/valid/en-ro/romanian.jsonl"),
        GoldSet("en-fr-hansards", "binaryalign/valid/en-fr/hansards.jsonl"),
        GoldSet("en-ja", "binaryalign/valid/en-ja/kftt.jsonl"),
    ]
}
DEFAULT_SETS = ("en-fr", "ro-en", "en-es", "en-cs", "en-sv")


def evaluate_gold_sets(
    nlp, data_dir: Path, sets: Sequence[str] = DEFAULT_SETS, methods: Sequence[str] = ("argmax", "itermax", "threshold"),
    batch_size: int = 32, limit: int = 0, skip_malformed: bool = False,
) -> List[Dict]:
    """One row per (set, method): the set is encoded once and every method extracts from the same matrices.
    A malformed gold record stops the evaluation with its file and line, unless `skip_malformed`: then it is
    left out, and each row says how many were (`skipped`) and names them (`skipped_records`)."""
    check_limit(limit, "evaluate_gold_sets")
    aligner = nlp.get_pipe("clinical_aligner")
    settings = {k: aligner.cfg[k] for k in ("threshold", "temperature", "sinkhorn_iterations")}
    if not aligner.cfg["store_matrix"]:
        raise ValueError("evaluate_gold_sets: the clinical_aligner must keep its scores (store_matrix = true)")
    rows = []
    for name in sets:
        if name not in GOLD_SETS:
            raise ValueError(f"unknown gold set {name!r}; known: {sorted(GOLD_SETS)}")
        spec = GOLD_SETS[name]
        gold_path = Path(data_dir) / spec.gold if spec.gold else None
        skipped = [] if skip_malformed else None
        data = read_gold_set(Path(data_dir) / spec.path, gold_path, spec.one_based, skipped=skipped)
        if limit:
            data = data[:limit]
        docs = align_word_pairs(nlp, [(s, t) for s, t, _ in data], batch_size=batch_size, progress=False)
        golds = [gold_alignment(len(t), len(s), g) for s, t, g in data]
        for method in methods:
            counts = AlignmentCounts()
            for doc, gold in zip(docs, golds):
                counts.add_gold(set(relink(doc, method, **settings).pairs()), gold)
            scores = counts.scores("")
            rows.append({"set": name, "method": method, "pairs": len(docs), **{k: 100 * v for k, v in scores.items()},
                         "published": spec.published, "skipped": len(skipped or []),
                         "skipped_records": [str(err) for err in skipped or []]})
    return rows


def joined_document_members(data: Sequence, min_words: int, n_docs: int, repeat: int = 1) -> List[List[int]]:
    """Which gold pairs (indices into `data`, cycled `repeat` times) make up each document of
    `joined_documents`: consecutive pairs until both sides reach `min_words`. A document-level figure is
    only comparable with the sentence-level figure of these same pairs, not of the whole set."""
    members, current, n_src, n_tgt = [], [], 0, 0
    for k in range(len(data) * repeat):
        s, t, _ = data[k % len(data)]
        current.append(k % len(data))
        n_src, n_tgt = n_src + len(s), n_tgt + len(t)
        if n_src >= min_words and n_tgt >= min_words:
            members.append(current)
            current, n_src, n_tgt = [], 0, 0
            if len(members) == n_docs:
                break
    return members


def joined_documents(data: Sequence, min_words: int, n_docs: int, repeat: int = 1) -> List:
    """Consecutive gold sentence pairs (and their links, shifted) joined until both sides reach `min_words`:
    documents with a known word alignment, for measuring document-level alignment. `repeat` cycles the
    set when it is too short for `n_docs` documents."""
    docs = []
    for indices in joined_document_members(data, min_words, n_docs, repeat):
        src, tgt, gold = [], [], []
        for k in indices:
            s, t, g = data[k]
            gold += [(j + len(src), i + len(tgt), sure) for j, i, sure in (g or [])]
            src, tgt = src + list(s), tgt + list(t)
        docs.append((src, tgt, gold))
    return docs


def format_rows(rows: List[Dict]) -> str:
    lines = [f"{'set':<7} {'method':<10} {'pairs':>5} {'AER':>6} {'P':>6} {'R':>6} {'F1':>6}   published AER"]
    for r in rows:
        pub = ", ".join(f"{k} {v}" for k, v in r["published"].items()) if r["method"] == "argmax" else ""
        lines.append(f"{r['set']:<7} {r['method']:<10} {r['pairs']:>5} {r['aer']:>6.1f} {r['p']:>6.1f} {r['r']:>6.1f} {r['f']:>6.1f}   {pub}")
    notes = {r["set"]: r["skipped_records"] for r in rows if r.get("skipped")}
    for name, records in notes.items():
        lines.append(f"{name}: {len(records)} malformed gold records left out (--skip-malformed):")
        lines += [f"  {record}" for record in records]
    return "\n".join(lines)
