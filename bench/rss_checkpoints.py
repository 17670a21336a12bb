"""RSS and high-water RSS of evaluate-projection's steps, in one process (where the memory goes):

    python bench/rss_checkpoints.py [N_PAIRS] [ENCODER]

Checkpoints: imports, pipeline loaded, examples read, the first N_PAIRS MultiClinAI dev pairs projected and
scored (default 40). Prints the scores too, so a memory change can be checked for unchanged outputs.
"""
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package
DATA = ROOT.parent / "shared" / "data" / "multiclinai" / "paired_es_en.dev.jsonl"


def checkpoint(tag: str) -> None:
    import psutil

    print(f"{tag:<30} rss {psutil.Process().memory_info().rss / 2**20:7.0f} MiB  "
          f"high-water {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.0f} MiB", flush=True)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    checkpoint("import torch")
    from spacy_clinalign.encoders import default_encoder_dir
    from spacy_clinalign.io.multiclinai import read_multiclinai_examples
    from spacy_clinalign.pipelines import load_projection_pipeline
    from spacy_clinalign.scoring.spans import evaluate_in_place

    checkpoint("imports")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    nlp = load_projection_pipeline(sys.argv[2] if len(sys.argv) > 2 else str(default_encoder_dir()), None)
    checkpoint("pipeline loaded")
    examples = list(read_multiclinai_examples(nlp.vocab, DATA, limit=n))
    checkpoint("examples read")
    start = time.time()
    scores = evaluate_in_place(nlp, examples, batch_size=8)
    checkpoint(f"{n} pairs ({time.time() - start:.0f} s)")
    print({k: round(v, 4) for k, v in scores.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
