"""AER of int8 recipes against float32 on one gold set (first N pairs), the encoder loaded once:

    python bench/int8_recipes.py SET N VARIANT [VARIANT ...]

VARIANT: `fp32`; `base` (int8, no smoothing); `s0.8` (int8, smoothing alpha 0.8); `+l1` adds the last layer
kept in float32, e.g. `s0.8+l1`. Prints one line per variant: AER of argmax / itermax / threshold and pairs/s.
Used to choose `Int8Recipe` on a tune set (binaryalign en-ja), never on the sets reported.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's package

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alignment"


def main() -> None:
    import torch

    from spacy_clinalign.alignment.relink import relink
    from spacy_clinalign.encoders import default_encoder_dir
    from spacy_clinalign.io.alignment_files import read_gold_set
    from spacy_clinalign.io.readers import gold_alignment
    from spacy_clinalign.models import quantize
    from spacy_clinalign.pipelines import align_word_pairs, load_aligner
    from spacy_clinalign.scoring.alignment import AlignmentCounts
    from spacy_clinalign.scoring.gold_sets import GOLD_SETS

    if len(sys.argv) < 4:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    set_name, limit, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    spec = GOLD_SETS[set_name]
    data = read_gold_set(DATA / spec.path, DATA / spec.gold if spec.gold else None, spec.one_based, skipped=[])[:limit]
    golds = [gold_alignment(len(t), len(s), g) for s, t, g in data]
    nlp = load_aligner(os.environ.get("ENCODER", str(default_encoder_dir())), layer=8)
    aligner = nlp.get_pipe("clinical_aligner")
    settings = {k: aligner.cfg[k] for k in ("threshold", "temperature", "sinkhorn_iterations")}
    for variant in variants:
        aligner.cfg["quantize"] = "none" if variant == "fp32" else "int8"
        if variant != "fp32":
            alpha, last = None, 0
            for part in variant.split("+"):
                if part.startswith("s"):
                    alpha = float(part[1:])
                elif part.startswith("l"):
                    last = int(part[1:])
            quantize.DEFAULT_RECIPE = quantize.Int8Recipe(smooth_alpha=alpha, float_last_layers=last)
            for node in aligner.model.walk():  # rebuild the int8 copy with this recipe
                for shim in node.shims:
                    shim.__dict__.pop("_int8_cache", None)
        start = time.perf_counter()
        docs = align_word_pairs(nlp, [(s, t) for s, t, _ in data], batch_size=32, progress=False)
        secs = time.perf_counter() - start
        aers = []
        for method in ("argmax", "itermax", "threshold"):
            counts = AlignmentCounts()
            for doc, gold in zip(docs, golds):
                counts.add_gold(set(relink(doc, method, **settings).pairs()), gold)
            aers.append(100 * counts.scores("")["aer"])
        print(f"{set_name} {variant:<12} AER argmax {aers[0]:5.2f} itermax {aers[1]:5.2f} threshold {aers[2]:5.2f}"
              f"  {len(data) / secs:5.2f} pairs/s", flush=True)


if __name__ == "__main__":
    main()
