"""Which alignment gold sets a training file has seen: for every binaryalign train file, the number of
pairs of each evaluation set (awesome-align gold sets, binaryalign valid splits) that share a source or
target sentence with it (lowercased tokens). Supervised figures are only reported on sets with 0.

    python bench/contamination.py [--data ../shared/data/alignment]
"""
import argparse
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "alignment"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    args = parser.parse_args()

    from spacy_clinalign.io.alignment_files import read_gold_set
    from spacy_clinalign.scoring.gold_sets import GOLD_SETS
    from spacy_clinalign.training.contamination import overlapping_pairs

    evaluation = {name: read_gold_set(args.data / s.path, args.data / s.gold if s.gold else None, s.one_based)
                  for name, s in GOLD_SETS.items()}
    for valid in sorted((args.data / "binaryalign" / "valid").glob("*/*.jsonl")):
        try:
            evaluation["v:" + valid.parent.name] = read_gold_set(valid)
        except ValueError as err:
            print(f"skipped (unreadable): {err}")
    names = list(evaluation)
    print("pairs of each evaluation set (columns; binaryalign valid splits by folder) sharing a sentence with a train file; v: = binaryalign valid")
    print("train file".ljust(22) + " ".join(n[:9].rjust(9) for n in names))
    for train in sorted((args.data / "binaryalign" / "train").glob("*/*.jsonl")):
        try:
            rows = read_gold_set(train)
        except ValueError as err:
            print(f"skipped (unreadable): {err}")
            continue
        cells = [str(len(overlapping_pairs(rows, evaluation[n]))) for n in names]
        print(f"{train.parent.name}/{train.stem}"[:21].ljust(22) + " ".join(c.rjust(9) for c in cells))
    print("set sizes".ljust(22) + " ".join(str(len(evaluation[n])).rjust(9) for n in names))


if __name__ == "__main__":
    main()
