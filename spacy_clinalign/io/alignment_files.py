"""Readers and writers for word-alignment files: `source ||| target` parallel text, Pharaoh/talp gold
(`i-j` sure, `i-jp` / `ipj` / `i?j` possible, 0- or 1-based), and the binaryalign jsonl gold.

Gold links are returned as (source_j, target_i, sure) with 0-based indices, the order the files use.
"""
import re
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import srsly

from .atomic import atomic_write_text
from .text_lines import InputFormatError, read_lines

Link = Tuple[int, int, bool]
PathLike = Union[str, Path]

_LINK_RE = re.compile(r"^(\d+)([-pP?])(\d+)([pP]?)$")


class AlignmentFormatError(InputFormatError):
    """A malformed alignment or parallel-text line; the message names the file and the 1-based line."""


def _lines(path: PathLike) -> List[str]:
    """Lines split at \\n / \\r\\n only: U+2028 or U+0085 inside a sentence is not a line break."""
    return read_lines(path, "Alignment file")


def split_tokens(text: str) -> List[str]:
    """Tokens of a pre-tokenized line: split on ASCII spaces and tabs only. Unicode spaces such as the
    ideographic space U+3000 are tokens in the gold sets (ja-en), so `str.split()` would shift indices."""
    return [w for w in re.split(r"[ \t]+", text.strip(" \t\r\n")) if w]


def parse_parallel_line(line: str, path: PathLike = "<string>", line_no: int = 1) -> Tuple[List[str], List[str]]:
    if line.count("|||") != 1:
        raise AlignmentFormatError(path, line_no, "expected exactly one ' ||| ' between source and target")
    src, tgt = line.split("|||")
    return split_tokens(src), split_tokens(tgt)


def read_parallel(path: PathLike) -> List[Tuple[List[str], List[str]]]:
    """Read a `source ||| target` file of whitespace-tokenized lines."""
    return [parse_parallel_line(line, path, i + 1) for i, line in enumerate(_lines(path))]


def parse_links(
    line: str,
    one_based: bool = False,
    path: PathLike = "<string>",
    line_no: int = 1,
    lengths: Optional[Tuple[int, int]] = None,
) -> List[Link]:
    """Parse one Pharaoh/talp line into (source_j, target_i, sure) 0-based links; a `p` or `?` marks possible."""
    links: List[Link] = []
    offset = 1 if one_based else 0
    for item in line.split():
        item = item.split(":", 1)[0]  # drop a trailing probability (`i-j:0.93`)
        m = _LINK_RE.match(item)
        if not m:
            raise AlignmentFormatError(path, line_no, f"malformed link {item!r} (expected i-j, i-jp, ipj or i?j)")
        j, sep, i = int(m.group(1)) - offset, m.group(2), int(m.group(3)) - offset
        if j < 0 or i < 0:
            raise AlignmentFormatError(path, line_no, f"link {item!r} has index 0 but the file is read as 1-based")
        if lengths is not None and (j >= lengths[0] or i >= lengths[1]):
            raise AlignmentFormatError(
                path, line_no,
                f"link {item!r} is outside the sentence pair ({lengths[0]} source x {lengths[1]} target tokens)",
            )
        sure = sep == "-" and not m.group(4)
        links.append((j, i, sure))
    return links


def read_links(
    path: PathLike, one_based: bool = False, lengths: Optional[Sequence[Tuple[int, int]]] = None
) -> List[List[Link]]:
    """Read a Pharaoh/talp file, one sentence pair a line; with `lengths`, indices are checked against them."""
    lines = _lines(path)
    if lengths is not None and len(lengths) != len(lines):
        raise AlignmentFormatError(path, len(lines), f"has {len(lines)} lines but the parallel file has {len(lengths)}")
    return [
        parse_links(line, one_based, path, n + 1, None if lengths is None else lengths[n])
        for n, line in enumerate(lines)
    ]


def read_binaryalign_jsonl(
    path: PathLike, skipped: Optional[List[AlignmentFormatError]] = None
) -> Iterator[Tuple[List[str], List[str], List[Link]]]:
    """Read binaryalign gold: {"src_words", "tgt_words", "alignment": [[src_j, tgt_i], ...]} (0-based, sure).

    A malformed record raises, naming the file and line. Only when the caller passes a `skipped` list is it
    left out instead, and its error appended there, so the caller can report every record it did not score
    (binaryalign's en-ja valid split has 4 of 247 records with a link past the sentence's end)."""
    p = Path(path)
    for n, line in enumerate(_lines(p), start=1):
        if not line.strip():
            continue
        try:
            yield _binaryalign_record(p, n, line)
        except AlignmentFormatError as err:
            if skipped is None:
                raise
            skipped.append(err)


def _binaryalign_record(p: Path, n: int, line: str) -> Tuple[List[str], List[str], List[Link]]:
    try:
        obj = srsly.json_loads(line)
        src, tgt = list(obj["src_words"]), list(obj["tgt_words"])
        links = [(int(j), int(i), True) for j, i in obj["alignment"]]
    except (ValueError, KeyError, TypeError) as err:
        raise AlignmentFormatError(p, n, f"not a binaryalign record ({err})") from None
    for j, i, _ in links:
        if not (0 <= j < len(src) and 0 <= i < len(tgt)):
            raise AlignmentFormatError(p, n, f"link {j}-{i} is outside the pair ({len(src)} x {len(tgt)})")
    return src, tgt, links


def read_gold_set(
    path: PathLike, gold_path: Optional[PathLike] = None, one_based: bool = True,
    skipped: Optional[List[AlignmentFormatError]] = None,
) -> List[Tuple[List[str], List[str], Optional[List[Link]]]]:
    """One entry point for evaluation sets: a `.jsonl` binaryalign file, or a parallel file plus its gold.
    `skipped`: collect malformed binaryalign records there instead of raising (see read_binaryalign_jsonl)."""
    if str(path).endswith(".jsonl"):
        return list(read_binaryalign_jsonl(path, skipped))
    pairs = read_parallel(path)
    if gold_path is None:
        return [(s, t, None) for s, t in pairs]
    golds = read_links(gold_path, one_based=one_based, lengths=[(len(s), len(t)) for s, t in pairs])
    return [(s, t, g) for (s, t), g in zip(pairs, golds)]


def write_pharaoh(path: PathLike, lines: Sequence[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))
