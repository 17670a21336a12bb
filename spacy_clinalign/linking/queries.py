"""The text a mention becomes before retrieval and reranking: training and linking both build it here,
so a model is queried the way it was trained."""


def context_of(text: str, start: int, end: int, window: int) -> str:
    """Up to `window` whitespace tokens each side of text[start:end], for context-aware queries."""
    if window <= 0:
        return ""
    left = text[:start].split()[-window:]
    right = text[end:].split()[:window]
    return " ".join(left + ["…"] + right)


def format_query(mention: str, context: str = "") -> str:
    """The query text both training and linking use: the mention, then its context after ` | `."""
    mention = " ".join(mention.split())
    return f"{mention} | {context}" if context else mention
