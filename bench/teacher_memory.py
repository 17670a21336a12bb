"""Peak memory and time of teacher construction for one long document pair (target: < 4 GiB on CPU).

Concatenates CodiEsp documents (Spanish and their English translations) until both sides hold at
least --tokens tokens, then builds the teacher matrix with every view. Usage:
    python bench/teacher_memory.py [--encoder DIR] [--tokens 5000] [--data ../shared/data/codiesp/train]
"""
import argparse
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from spacy_clinalign.encoders import default_encoder_dir
    from spacy_clinalign.pairs import register_extensions
    from spacy_clinalign.training.teacher_corpus import (
        TeacherSettings, TokenEncoder, make_tokenizers, read_document_pairs, teacher_matrix,
    )

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default=str(default_encoder_dir()))
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/codiesp/train"))
    args = parser.parse_args()
    register_extensions()
    nlp_src, nlp_tgt = make_tokenizers("es", "en")
    src_text, tgt_text = [], []
    for _, s, t in read_document_pairs(Path(args.data) / "text_files", Path(args.data) / "text_files_en"):
        src_text.append(s)
        tgt_text.append(t)
        if len(nlp_src.make_doc(" ".join(src_text))) >= args.tokens and len(nlp_tgt.make_doc(" ".join(tgt_text))) >= args.tokens:
            break
    source = nlp_src(" ".join(src_text))
    target = nlp_tgt(" ".join(tgt_text))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    settings = TeacherSettings(encoder=args.encoder, layer=args.layer)
    encoder = TokenEncoder(args.encoder, args.layer, nlp_tgt.vocab)
    start = time.perf_counter()
    t_vecs, s_vecs = encoder.encode([target, source])
    encoded = time.perf_counter()
    vectors = {view: (t_vecs, s_vecs) for view in ("sentence", "phrase", "token")}
    teacher = teacher_matrix(target, source, vectors, settings)
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"pair: {len(target)} target x {len(source)} source tokens; teacher {teacher.shape} {teacher.dtype}")
    print(f"encode {encoded - start:.1f} s, views + Sinkhorn (100 it.) {done - encoded:.1f} s")
    print(f"peak RSS {peak:.2f} GiB (before encoder load {rss0:.2f} GiB)")


if __name__ == "__main__":
    main()
