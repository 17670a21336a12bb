"""Throughput and peak memory of clinical_aligner on the en-fr gold sentences (CPU, and GPU if present).

Prints a table: device, batch size, pairs/s, subword tokens/s, peak memory. Usage:
    python bench/align.py [--encoder DIR] [--data FILE] [--layer 8] [--batch-sizes 8 32 128] [--repeat 1]
"""
import argparse
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(device: str, encoder: str, pairs, layer: int, batch_sizes, repeat: int):
    import spacy

    from spacy_clinalign.pipelines import align_word_pairs, load_aligner

    if device == "gpu":
        spacy.require_gpu(0)
    nlp = load_aligner(encoder, layer=layer)
    tokenizer = nlp.get_pipe("clinical_aligner").model.layers[0].tokenizer
    n_subwords = sum(len(tokenizer(" ".join(s))["input_ids"]) + len(tokenizer(" ".join(t))["input_ids"]) for s, t in pairs)
    align_word_pairs(nlp, pairs[:16], batch_size=16, progress=False)  # warm-up
    rows = []
    for bs in batch_sizes:
        if device == "gpu":
            import torch

            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            align_word_pairs(nlp, pairs, batch_size=bs, progress=False)
        if device == "gpu":
            torch.cuda.synchronize()
            mem = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU"
        else:
            mem = f"{peak_rss_mib():.0f} MiB RSS"
        secs = (time.perf_counter() - start) / repeat
        rows.append((device, bs, len(pairs) / secs, n_subwords / secs, mem))
    return rows


def main() -> None:
    from spacy_clinalign.encoders import default_encoder_dir
    from spacy_clinalign.io.alignment_files import read_parallel

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default=str(default_encoder_dir()))
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/alignment/awesome-align/enfr.src-tgt"))
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or gpu (default: cpu, plus gpu if found)")
    args = parser.parse_args()
    pairs = read_parallel(args.data)
    devices = args.devices
    if devices is None:
        import torch

        devices = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
    import torch

    print(f"clinical_aligner on {args.data}: {len(pairs)} pairs, encoder {args.encoder} layer {args.layer}, "
          f"torch threads {torch.get_num_threads()}", file=sys.stderr)
    rows = []
    for device in devices:
        rows.extend(run(device, args.encoder, pairs, args.layer, args.batch_sizes, args.repeat))
    print(f"{'device':<6} {'batch':>5} {'pairs/s':>9} {'subwords/s':>11}  peak memory")
    for device, bs, pps, sps, mem in rows:
        print(f"{device:<6} {bs:>5} {pps:>9.1f} {sps:>11.0f}  {mem}")


if __name__ == "__main__":
    main()
