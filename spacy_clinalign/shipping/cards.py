"""The model card of a shipped part: `card.json` (read by the builder and the checks) and the
`MODEL_CARD.md` rendered from it. The card names the base encoder the delta was made against, so a delta
is only ever applied to that encoder."""
import json
from pathlib import Path
from typing import Any, Dict, Union

CARD_NAME = "card.json"
CARD_MD = "MODEL_CARD.md"
BASE_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")
# What the person who trained a part says about it (make-delta --card-json); the rest is measured.
USER_KEYS = ("description", "pipeline", "training", "figures", "sources", "version", "notes")


def read_card(part_dir: Union[str, Path]) -> Dict[str, Any]:
    path = Path(part_dir) / CARD_NAME
    if not path.is_file():
        raise ValueError(f"{path} is missing: {part_dir} is not a shipped part (a delta with its card)")
    try:
        card = json.loads(path.read_text(encoding="utf8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    base = card.get("base") if isinstance(card, dict) else None
    missing = [k for k in BASE_KEYS if not isinstance(base, dict) or k not in base]
    if missing:
        raise ValueError(f"{path}: the card does not name its base encoder's {', '.join(missing)} "
                         "(card['base']); the delta cannot be checked against an encoder")
    return card


def write_card(part_dir: Union[str, Path], card: Dict[str, Any]) -> None:
    part_dir = Path(part_dir)
    (part_dir / CARD_NAME).write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                      encoding="utf8")
    (part_dir / CARD_MD).write_text(render_card(card), encoding="utf8")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_card(card: Dict[str, Any]) -> str:
    """MODEL_CARD.md: what the part is, its base, how it was trained and what it scores."""
    base, delta, training = card.get("base", {}), card.get("delta", {}), card.get("training", {}) or {}
    lines = [f"# {card.get('name', 'shipped part')} (spacy-clinalign)", ""]
    if card.get("description"):
        lines += [card["description"], ""]
    lines += [
        f"- Pipeline built from it: `{card.get('pipeline', '?')}` "
        "(`python -m spacy_clinalign pipelines build OUT_DIR`, then `spacy.load(OUT_DIR / NAME)`).",
        f"- Base encoder: {base.get('name', '?')} ({base.get('model_type')}, {base.get('num_hidden_layers')} layers, "
        f"hidden {base.get('hidden_size')}, vocabulary {base.get('vocab_size')}); the delta is refused on any other.",
    ]
    if card.get("layer") is not None:
        lines.append(f"- Hidden layer read: {card['layer']}.")
    if delta:
        lines.append(f"- Delta: {delta.get('tensors')} tensors, {delta.get('parameters')} parameters stored as "
                     f"{delta.get('dtype')} (the encoder parameters training changed; all others are the base's).")
    if card.get("heads"):
        lines.append(f"- Heads (thinc msgpack, data only): {', '.join(card['heads'])}.")
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- {key}: {_value(value) if key != 'command' else '`' + str(value) + '`'}"
                  for key, value in training.items()]
    figures = card.get("figures") or {}
    if figures:
        lines += ["", "## Figures", ""]
        commands = {k: v for k, v in figures.items() if k == "command" or k.endswith("/command")}
        for key, command in sorted(commands.items()):
            scope = f"`{key[:-len('/command')]}/...` figures" if "/" in key else "Figures"
            lines += [f"{scope} printed by `{command}`.", ""]
        lines += ["| measure | value |", "| --- | --- |"]
        lines += [f"| {key} | {_value(value)} |" for key, value in figures.items() if key not in commands]
    if card.get("sources"):
        lines += ["", "## Sources", ""]
        lines += [f"- {_value(source)}" for source in card["sources"]]
    if card.get("notes"):
        lines += ["", "## Notes", "", str(card["notes"])]
    return "\n".join(lines) + "\n"


def flat_figures(scores: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """Numeric scores of an `--output` JSON (evaluate-projection, evaluate-ner, link evaluate), nested
    dicts flattened with dots: {"proj_per_type": {"DIS": {"f": 0.9}}} -> {"proj_per_type.DIS.f": 0.9}."""
    flat: Dict[str, float] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_figures(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat
