"""bio_ner_cnn on the held-out slice of SPACCC train (every 10th document, as configs/ner_cnn_shipped.cfg
holds out), with its decoding settings as saved and with span-end trimming switched on or off: the settings
of the shipped NER are chosen here, never on SPACCC dev.

    python bench/ner_heldout.py PIPELINE [--train ../shared/data/spaccc/train] [--heldout-every 10]

Prints official char / strict F1 (micro) for: trimming off, trailing function words only, function words +
punctuation (the shipped setting's word list is read from configs/ner_cnn_shipped.cfg)."""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, not whichever one the venv installed


def main() -> None:
    import spacy
    from thinc.api import Config

    from spacy_clinalign.io.ner_corpora import create_spaccc_reader
    from spacy_clinalign.scoring.spans import evaluate_in_place

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--train", default=str(HERE.parents[1] / "shared" / "data" / "spaccc" / "train"))
    parser.add_argument("--heldout-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    shipped = Config().from_disk(HERE.parent / "configs" / "ner_cnn_shipped.cfg", interpolate=False)
    words = list(shipped["components"]["bio_ner_cnn"]["trim_end_words"])
    settings = [("no trimming", [], False), ("trailing function words", words, False),
                ("function words + punctuation (shipped)", words, True)]
    for name, trim_words, trim_punct in settings:
        nlp = spacy.load(args.pipeline, config={"components": {"bio_ner_cnn": {
            "trim_end_words": trim_words, "trim_end_punct": trim_punct}}})
        key = nlp.get_pipe("bio_ner_cnn").cfg["spans_key"] or "entities"
        reader = create_spaccc_reader(Path(args.train), spans_key=key, part="heldout", heldout_every=args.heldout_every)
        examples = list(reader(nlp))
        scores = evaluate_in_place(nlp, examples, batch_size=args.batch_size)
        print(f"{name:40s} {len(examples)} docs  char F1 {scores['ner_char_f']:.4f}  strict F1 {scores['ner_strict_f']:.4f}")


if __name__ == "__main__":
    main()
