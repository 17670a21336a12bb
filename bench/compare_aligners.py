"""clinical_aligner against SimAlign and awesome-align: same gold sets, same local encoder folder, same
layer, same machine, one run. Prints one table (AER, pairs/s, peak RSS per system and method, plus our /
their speed ratios) and a long-document section (pairs of 2,000+ words).

    python bench/compare_aligners.py [--encoder DIR] [--layer 8] [--sets en-fr ro-en en-es en-cs en-sv]
                                     [--batch-size 32] [--long-words 2000] [--long-pairs 4] [--device cpu|cuda]
                                     [--systems ours ours-int8 simalign awesome-align] [--threads N] [--limit N]
                                     [--repeat N]

`--long-pairs 0` skips the long-document section. `ours-int8` is ours with `quantize = "int8"` (CPU).

It installs nothing: see bench/README.md for the venv (simalign and awesome-align beside our stack).
Each system runs in its own child process, so peak RSS is its own.

How each system is driven (same encoder weights, same layer, words = the gold files' tokens):
- ours: `clinical_aligner` through `nlp.pipe` (batched), subword vectors mean-pooled onto words, then
  argmax (intersection of row and column argmax), itermax, or threshold (awesome-align's rule).
- SimAlign 0.4: `SentenceAligner(model=DIR, token_type="bpe", matching_methods="ai", layer=L)`, one
  pair per call (its API has no batch); "inter" is its argmax, "itermax" its itermax.
- awesome-align 0.1.7: its own BERT (`awesome_align.modeling.BertForMaskedLM`) loaded with the e5
  weights, words tokenized with the e5 tokenizer as its run_align.py does, and its
  `get_aligned_word(extraction="softmax", softmax_threshold=0.001)`, batched like run_align.py. Its
  module constants hard-code BERT's special ids (PAD 0, CLS 101, SEP 102); they are set to the e5
  tokenizer's ids, or every pair would be masked wrongly.
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, not whichever one the venv installed
DATA = HERE.parent.parent / "shared" / "data" / "alignment"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_set(name: str, limit: int):
    from spacy_clinalign.scoring.gold_sets import GOLD_SETS
    from spacy_clinalign.io.alignment_files import read_gold_set

    spec = GOLD_SETS[name]
    data = read_gold_set(DATA / spec.path, DATA / spec.gold if spec.gold else None, spec.one_based)
    return data[:limit] if limit else data


def long_pairs(name: str, min_words: int, n_pairs: int):
    """Consecutive sentence pairs (and their gold, shifted) joined until each side has min_words."""
    from spacy_clinalign.scoring.gold_sets import joined_documents

    return joined_documents(load_set(name, 0), min_words, n_pairs, repeat=50)


def score(pred_pairs, data):
    from spacy_clinalign.io.readers import gold_alignment
    from spacy_clinalign.scoring.alignment import AlignmentCounts

    counts = AlignmentCounts()
    for pred, (s, t, g) in zip(pred_pairs, data):
        counts.add_gold(set(pred), gold_alignment(len(t), len(s), g))
    return 100 * counts.scores("")["aer"]


# --- the three systems: each returns {method: [set of (src_j, tgt_i) per pair]} ----------------------
def best_of(repeat, timed):
    """`timed()` run `repeat` times: (its last result, the fastest pass's seconds). On a shared machine
    the fastest of a few passes is the one least disturbed by other work (timeit's convention)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = timed()
        best = min(best, time.perf_counter() - start)
    return result, best


def run_ours(encoder, layer, data, batch_size, device, quantize="none", repeat=1):
    import spacy

    from spacy_clinalign.alignment.relink import relink
    from spacy_clinalign.pipelines import align_word_pairs, load_aligner

    if device == "cuda":
        spacy.require_gpu(0)
    nlp = load_aligner(encoder, layer=layer)
    aligner = nlp.get_pipe("clinical_aligner")
    aligner.cfg["quantize"] = quantize
    settings = {k: aligner.cfg[k] for k in ("threshold", "temperature", "sinkhorn_iterations")}
    align_word_pairs(nlp, [(s, t) for s, t, _ in data[:8]], batch_size=8, progress=False)  # warm-up
    docs, encode_s = best_of(repeat, lambda: align_word_pairs(nlp, [(s, t) for s, t, _ in data],
                                                              batch_size=batch_size, progress=False))
    out, secs = {}, {}
    for method in ("argmax", "itermax", "threshold"):
        out[method], extract_s = best_of(repeat, lambda: [relink(d, method, **settings).pairs() for d in docs])
        # the default method (argmax) is extracted inside nlp.pipe; others cost their own extraction
        secs[method] = encode_s + (extract_s if method != "argmax" else 0.0)
    return out, secs


def run_simalign(encoder, layer, data, batch_size, device, repeat=1):
    from simalign import SentenceAligner

    aligner = SentenceAligner(model=encoder, token_type="bpe", matching_methods="ai", device=device, layer=layer)
    aligner.get_word_aligns(data[0][0], data[0][1])  # warm-up

    def timed():
        out = {"argmax": [], "itermax": []}
        for s, t, _ in data:
            result = aligner.get_word_aligns(s, t)
            out["argmax"].append(result["inter"])
            out["itermax"].append(result["itermax"])
        return out

    out, secs = best_of(repeat, timed)
    return out, {"argmax": secs, "itermax": secs}


def _awesome_model(encoder, device):
    import torch
    from awesome_align import modeling
    from awesome_align.configuration_bert import BertConfig
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder, local_files_only=True)
    modeling.PAD_ID = tokenizer.pad_token_id
    modeling.CLS_ID = tokenizer.cls_token_id
    modeling.SEP_ID = tokenizer.sep_token_id
    config = BertConfig.from_pretrained(encoder)
    model = modeling.BertForMaskedLM(config)
    weights = AutoModel.from_pretrained(encoder, local_files_only=True).state_dict()
    missing, _ = model.bert.load_state_dict(weights, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing:
        raise RuntimeError(f"awesome-align's BERT did not receive e5 weights for {missing[:5]}")
    model.to(torch.device(device)).eval()
    return model, tokenizer


def _awesome_inputs(tokenizer, words):
    pieces = [tokenizer.tokenize(w) or [tokenizer.unk_token] for w in words]
    ids = [tokenizer.cls_token_id] + [tokenizer.convert_tokens_to_ids(p) for w in pieces for p in w] + [tokenizer.sep_token_id]
    b2w = [i for i, w in enumerate(pieces) for _ in w]
    return ids, b2w


def run_awesome(encoder, layer, data, batch_size, device, repeat=1):
    import torch

    model, tokenizer = _awesome_model(encoder, device)
    pad = tokenizer.pad_token_id

    def batches():
        for start in range(0, len(data), batch_size):
            chunk = data[start:start + batch_size]
            src = [_awesome_inputs(tokenizer, s) for s, _, _ in chunk]
            tgt = [_awesome_inputs(tokenizer, t) for _, t, _ in chunk]
            def pad_to(rows):
                width = max(len(r) for r, _ in rows)
                return torch.tensor([r + [pad] * (width - len(r)) for r, _ in rows])
            yield pad_to(src), pad_to(tgt), [b for _, b in src], [b for _, b in tgt]

    first = next(batches())
    model.get_aligned_word(first[0][:2], first[1][:2], first[2][:2], first[3][:2], device, 0, 0,
                           align_layer=layer, extraction="softmax", softmax_threshold=0.001, test=True)

    def timed():
        out = []
        for ids_src, ids_tgt, b2w_src, b2w_tgt in batches():
            aligned = model.get_aligned_word(ids_src, ids_tgt, b2w_src, b2w_tgt, device, 0, 0, align_layer=layer,
                                             extraction="softmax", softmax_threshold=0.001, test=True)
            out.extend([sorted((int(a), int(b)) for a, b in pair) for pair in aligned])
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    out, secs = best_of(repeat, timed)
    return {"threshold": out}, {"threshold": secs}


def run_ours_int8(encoder, layer, data, batch_size, device, repeat=1):
    return run_ours(encoder, layer, data, batch_size, device, quantize="int8", repeat=repeat)


SYSTEMS = {"ours": run_ours, "ours-int8": run_ours_int8, "simalign": run_simalign, "awesome-align": run_awesome}


def child(args) -> None:
    """Run one system on one set in this process; print one JSON line."""
    data = long_pairs(args.set, args.long_words, args.long_pairs) if args.long else load_set(args.set, args.limit)
    result = {"system": args.system, "set": args.set, "long": args.long, "pairs": len(data),
              "words": sum(len(s) + len(t) for s, t, _ in data)}
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result["threads"] = torch.get_num_threads()
    try:
        preds, secs = SYSTEMS[args.system](args.encoder, args.layer, data, args.batch_size, args.device,
                                           repeat=args.repeat)
        result["methods"] = {m: {"aer": score(p, data), "pairs_per_s": len(data) / secs[m],
                                 "words_linked": sum(len({j for j, _ in pairs}) for pairs in p)}
                             for m, p in preds.items()}
    except Exception as err:  # a system failing on long documents is a result, not a crash of the bench
        result["error"] = f"{type(err).__name__}: {str(err)[:200]}"
    result["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result))


def main() -> None:
    from spacy_clinalign.encoders import default_encoder_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=str(default_encoder_dir()))
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--sets", nargs="+", default=["en-fr", "ro-en", "en-es", "en-cs", "en-sv"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="pairs per set (0 = all)")
    parser.add_argument("--long-words", type=int, default=2000)
    parser.add_argument("--long-pairs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every system (0 = torch's default)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed passes per system and set; the fastest counts (same for every system)")
    parser.add_argument("--json", type=Path, default=None, help="also write all results here")
    # internal: one system on one set
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--system", help=argparse.SUPPRESS)
    parser.add_argument("--set", help=argparse.SUPPRESS)
    parser.add_argument("--long", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    jobs = [(s, name, False) for name in args.sets for s in args.systems]
    if args.long_pairs > 0:  # 0: no long-document section
        jobs += [(s, "en-fr", True) for s in args.systems]
    results = []
    for system, name, long in jobs:
        cmd = [sys.executable, __file__, "--child", "--system", system, "--set", name, "--encoder", args.encoder,
               "--layer", str(args.layer), "--batch-size", str(args.batch_size), "--limit", str(args.limit),
               "--long-words", str(args.long_words), "--long-pairs", str(args.long_pairs), "--device", args.device,
               "--threads", str(args.threads), "--repeat", str(args.repeat)]
        if long:
            cmd.append("--long")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if not lines:
            results.append({"system": system, "set": name, "long": long, "error": f"exit {proc.returncode}: "
                            + proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "no output"})
        else:
            results.append(json.loads(lines[-1][7:]))
        print(f"done: {system} {name}{' long' if long else ''}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    print(render(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def render(results, args) -> str:
    threads = sorted({r.get("threads") for r in results if r.get("threads")})
    lines = [f"encoder {args.encoder}, layer {args.layer}, device {args.device}, batch {args.batch_size} (ours, awesome-align), "
             f"torch threads {threads}, fastest of {args.repeat} timed pass(es) per system and set", "",
             "| set | system | method | AER | pairs/s | peak RSS MiB | ours/theirs pairs/s (fp32 / int8) |", "|---|---|---|---|---|---|---|"]
    ours = {(r["set"], r["long"]): r for r in results if r["system"] == "ours" and "methods" in r}
    int8 = {(r["set"], r["long"]): r for r in results if r["system"] == "ours-int8" and "methods" in r}
    for r in results:
        if r.get("long"):
            continue
        if "methods" not in r:
            lines.append(f"| {r['set']} | {r['system']} | - | error: {r.get('error')} | | | |")
            continue
        for method, m in r["methods"].items():
            ratio = ""
            if not r["system"].startswith("ours"):
                parts = []
                for tag, mine in (("", ours.get((r["set"], False))), ("int8 ", int8.get((r["set"], False)))):
                    if mine and method in mine["methods"]:
                        parts.append(f"{tag}{mine['methods'][method]['pairs_per_s'] / m['pairs_per_s']:.1f}x")
                ratio = " / ".join(parts)
            lines.append(f"| {r['set']} | {r['system']} | {method} | {m['aer']:.1f} | {m['pairs_per_s']:.1f} | "
                         f"{r['peak_rss_mib']:.0f} | {ratio} |")
    if args.long_pairs <= 0:
        return "\n".join(lines)
    lines += ["", f"Long documents (en-fr sentences concatenated to >= {args.long_words} words a side):", "",
              "| system | pairs | words | method | AER | pairs/s | source words with a link | peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r.get("long"):
            continue
        if "methods" not in r:
            lines.append(f"| {r['system']} | {r.get('pairs', '')} | {r.get('words', '')} | - | error: {r.get('error')} | | | |")
            continue
        src_words = r["words"] // 2
        for method, m in r["methods"].items():
            lines.append(f"| {r['system']} | {r['pairs']} | {r['words']} | {method} | {m['aer']:.1f} | "
                         f"{m['pairs_per_s']:.2f} | {m['words_linked']} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
