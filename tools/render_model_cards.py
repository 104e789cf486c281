"""Regenerate model_cards/ from the templates in talkface/hub/templates/.

    python tools/render_model_cards.py            # rewrite model_cards/*.md
    python tools/render_model_cards.py --check    # exit 1 and list the stale cards, write nothing

Each card is `talkface.hub.cards.render_model_card(kind)`: the reference card of a model kind, with parameter counts
computed from the default configurations and preprocessing tables from the feature extractors' defaults. Edit the
templates (or MODEL_FACTS in talkface/hub/cards.py), never the rendered files; tests/hub/test_hub.py checks they agree.
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CARDS_DIR = REPO_ROOT / "model_cards"


def render_all() -> dict:
    """file name -> rendered card, for every kind in `talkface.hub.cards.MODEL_FACTS`."""
    sys.path.insert(0, str(REPO_ROOT))
    import talkface.models  # noqa: F401  (the model classes state their card rows; the hub layer imports no model)
    from talkface.hub.cards import CARD_KINDS, render_model_card

    return {f"{kind}.md": render_model_card(kind) for kind in CARD_KINDS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report cards that differ from the templates")
    parser.add_argument("--out", type=Path, default=CARDS_DIR, help="folder of the rendered cards")
    args = parser.parse_args(argv)

    cards = render_all()
    stale = [name for name, text in cards.items()
             if not (args.out / name).is_file() or (args.out / name).read_text(encoding="utf-8") != text]
    extra = sorted(p.name for p in args.out.glob("*.md") if p.name not in cards) if args.out.is_dir() else []
    if args.check:
        for name in stale:
            print(f"stale: {args.out / name}")
        for name in extra:
            print(f"not rendered from any template: {args.out / name}")
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(cards[name], encoding="utf-8")
        print(f"wrote {args.out / name}")
    for name in extra:
        print(f"warning: {args.out / name} is not rendered from any template; delete it or add a template")
    if not stale:
        print(f"all {len(cards)} cards in {args.out} are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
