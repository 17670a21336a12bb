"""icd_linker throughput and index cost: mentions/s for BM25, dense link-only and dense + reranking on
CPU (and GPU when torch sees one), plus index build time and memory for the whole catalogue.

    python bench/link.py PIPELINE [--mentions ../shared/data/codiesp/dev] [--limit 1000] [--build]

PIPELINE is a saved pipeline with icd_linker (e.g. from `link train-cross-encoder`). With --build the
dense index is rebuilt from the pipeline's catalogue and bi-encoder (all ~128k descriptions of
ICD-10-CM + CIE-10 + synonyms), timed, and its memory reported."""
import argparse
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import spacy
    import torch

    from spacy_clinalign.linking.indexes import DenseIndex
    from spacy_clinalign.io.linking_mentions import read_mentions
    from spacy_clinalign.linking.queries import format_query

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pipeline")
    parser.add_argument("--mentions", default=str(HERE.parent.parent / "shared/data/codiesp/dev"))
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--build", action="store_true", help="also rebuild and time the dense index")
    args = parser.parse_args()

    rss_start = peak_rss_mib()
    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe("icd_linker")._require()
    print(f"pipeline loaded: {len(linker.catalog)} codes, {len(linker.texts)} descriptions, "
          f"peak RSS {peak_rss_mib():.0f} MiB (from {rss_start:.0f})")
    if linker.dense is not None:
        vectors_mib = linker.dense.size * linker.bi_encoder.dim * 4 / 2**20
        print(f"dense index: {linker.dense.kind}, {linker.dense.size} x {linker.bi_encoder.dim} float32 = "
              f"{vectors_mib:.0f} MiB; serialized {len(linker.dense.to_bytes()) / 2**20:.0f} MiB")
    queries = [format_query(m.text) for m in read_mentions(args.mentions)][: args.limit]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"\n{len(queries)} mentions from {args.mentions}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print("| device | system | mentions/s |\n|---|---|---|")
    for device in devices:
        for encoder in (linker.bi_encoder, linker.cross_encoder):
            if encoder is not None:
                encoder.to(device)
        systems = [("bm25", "bm25", False), ("dense, link only", "dense", False)]
        if linker.cross_encoder is not None:
            systems.append(("dense + rerank top 10", "dense", True))
        for label, channels, rerank in systems:
            if device != "cpu" and channels == "bm25":
                continue
            linker.link(queries[:16], k=10, rerank=rerank, channels=channels)  # warm-up
            start = time.perf_counter()
            for i in range(0, len(queries), args.batch_size):
                linker.link(queries[i:i + args.batch_size], k=10, rerank=rerank, channels=channels)
            rate = len(queries) / (time.perf_counter() - start)
            print(f"| {device} | {label} | {rate:.0f} |")
    if args.build and linker.bi_encoder is not None:
        for device in devices:
            linker.bi_encoder.to(device)
            start = time.perf_counter()
            vectors = linker.bi_encoder.encode(linker.texts, kind="passage", progress=True)
            encoded = time.perf_counter() - start
            index = DenseIndex(vectors, kind=linker.dense.kind if linker.dense else "exact")
            print(f"\nindex build on {device}: {len(linker.texts)} descriptions encoded in {encoded:.0f} s "
                  f"({len(linker.texts) / encoded:.0f}/s), faiss add {time.perf_counter() - start - encoded:.1f} s, "
                  f"{index.size} rows; peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
