"""Where an English noun phrase cannot end: on a modifier that a word follows.

English puts adjectives before their noun ("derrame pleural bilateral" -> "bilateral pleural effusion"),
and the untrained e5 aligner links the Spanish modifiers better than the head nouns ("effusion" keeps
0.26 of its row inside the span, "bilateral" 0.99). So the candidate decoder's best span often stops on the
last modifier: "bilateral pleural", "ischaemic", "valvular", "in the left". On the tune half of the
MultiClinAI dev pairs that was the largest boundary error of DISEASE spans (bench/RESULTS.md). No English
parser installs here, so `modifier_ends` marks the tokens a span should not end on from their form alone:
words with an adjective suffix (pleural, ischaemic, valvular, exertional, toxic, coronary, infectious,
progressive, inferior) or a handful of position and degree adjectives (left, right, upper, lower, mild,
severe...), when the next token is a content word on the same side of any punctuation. A word followed by
punctuation, a function word or nothing may end a span ("valves thickened, with", "very atheromatous and").
"""
import re
import string
from typing import Dict, FrozenSet, Optional, Pattern

import numpy
from spacy.tokens import Doc

# Adjective-forming suffixes, and words that carry one but are nouns a clinical span may end on.
_EN_SUFFIX: Pattern = re.compile(r"[a-z]{2,}(?:al|ic|ar|ary|ory|ous|ive|ile|oid|ior)$")
_EN_WORDS = frozenset({"left", "right", "upper", "lower", "mild", "severe", "moderate", "acute", "major", "minor",
                       "small", "large", "high", "low", "mid", "middle",
                       # nouns English uses as modifiers in clinical compounds (heart failure, lymph node)
                       "heart", "lymph", "blood", "bone", "skin"})
_EN_NOUNS = frozenset({"hospital", "interval", "trial", "canal", "signal", "arrival", "removal", "withdrawal",
                       "colic", "clinic", "scar", "year", "sugar", "behavior", "behaviour", "exterior",
                       "interior", "antibiotic", "diuretic", "analgesic", "anaesthetic", "anesthetic",
                       "sedative", "laxative", "relative", "alternative", "polyp", "tubercular"})
RULES: Dict[str, tuple] = {"en": (_EN_SUFFIX, _EN_WORDS, _EN_NOUNS)}
_PUNCT = set(string.punctuation) | set("¿¡«»“”‘’…–—·")


def has_modifier_rule(lang: Optional[str]) -> bool:
    return lang in RULES


def modifier_ends(doc: Doc, lang: Optional[str], stop_words: FrozenSet[str] = frozenset()) -> numpy.ndarray:
    """True for each token of `doc` that is a prenominal modifier in `lang` followed by a content word (so a
    noun phrase cannot end there). All False for a language without a rule (Spanish, Italian... put most
    adjectives after the noun). `stop_words`: the language's function words (a following one ends the
    phrase)."""
    out = numpy.zeros(len(doc), dtype=bool)
    if lang not in RULES:
        return out
    suffix, words, nouns = RULES[lang]
    for token in doc[:-1]:
        text = token.text
        if not text.isalpha() or not token.whitespace_:
            continue  # attached punctuation ("thickened,") or a joined form: the phrase may end here
        lower = text.lower()
        if lower in nouns or not (lower in words or suffix.match(lower)):
            continue
        nxt = token.nbor(1)
        bare = nxt.text.strip("".join(_PUNCT)).lower()
        starts_with_word = bool(nxt.text) and nxt.text[0] not in _PUNCT and not nxt.is_space
        out[token.i] = starts_with_word and bool(bare) and bare not in stop_words and not bare.isdigit()
    return out
