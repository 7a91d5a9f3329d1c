"""What the LoRA cards show, and the prompt edits a card click makes. Pure: no Gradio here.

A card is a small typed view of a library entry. The catalog keeps the entries of the last scan so that typing in the
search box filters in memory; only the refresh button (or a download) rescans the library through the studio.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from loradeck.errors import LoradeckError
from loradeck.families import Family
from loradeck.prompt.tags import TAG_RE, format_tag, parse_lora_args

ALL_FOLDERS = "All folders"
TOP_LEVEL = "(top level)"
SORTS = ("Name", "Newest first")


@dataclass(frozen=True)
class Card:
    key: str  # qualified name (subfolder/name): unique, what the page sends back on a click
    name: str  # file stem
    alias: str
    prompt_name: str  # what goes into <lora:…>
    subfolder: str
    family: Family
    trigger_words: tuple[str, ...]
    activation_text: str  # the user's (or Civitai's) text a click adds to the prompt
    negative_text: str
    preferred_weight: float  # 0 = "use the default multiplier" (A1111), i.e. 1
    mtime: float
    has_preview: bool
    base_model: str = ""  # Civitai's label (Pony, Illustrious, Flux.1 D, …) when the library knows it

    @property
    def badge(self) -> str:
        """What the family badge says: Civitai's base-model label when known (Pony), else the family's (SDXL)."""
        return self.base_model or self.family.label

    @property
    def weight(self) -> float:
        return self.preferred_weight or 1.0

    @property
    def tag(self) -> str:
        return format_tag(self.prompt_name, self.weight)

    def mismatch(self, model_family: Family | None) -> str | None:
        """Why this card may not work with the loaded model (a sentence), or None when it should."""
        if model_family is None or self.family in (Family.UNKNOWN, model_family):
            return None
        return f"Made for {self.family.label}; the loaded model is {model_family.label}: it will be skipped."

    def matches(self, query: str) -> bool:
        q = query.strip().lower()
        if not q:
            return True
        haystack = " ".join((self.name, self.alias, self.subfolder, *self.trigger_words)).lower()
        return all(word in haystack for word in q.split())


def card_from_entry(entry: Any) -> Card:
    """A card from a ``loradeck.library.LoraEntry``. The text a click adds is the user's activation text, else the
    words Civitai lists (never the ss_tag_frequency guess: those are just the dataset's most common tags)."""
    user = entry.user
    activation = user.activation_text.strip() if user else ""
    if not activation and entry.trigger_source == "civitai":
        activation = ", ".join(entry.trigger_words)
    return Card(
        key=entry.qualified_name,
        name=entry.name,
        alias=entry.alias,
        prompt_name=entry.prompt_name,
        subfolder=entry.subfolder,
        family=Family(entry.family),
        trigger_words=tuple(entry.trigger_words),
        activation_text=activation,
        negative_text=(user.negative_text.strip() if user else ""),
        preferred_weight=float(entry.preferred_weight or 0.0),
        mtime=float(entry.mtime),
        has_preview=entry.preview is not None,
        base_model=getattr(entry, "base_model", None) or "",
    )


def select_cards(cards: list[Card], query: str = "", folder: str = ALL_FOLDERS, sort: str = "Name") -> list[Card]:
    """The cards a search, a folder filter and a sort leave, in display order."""
    chosen = [c for c in cards if c.matches(query) and _in_folder(c, folder)]
    if sort == "Newest first":
        return sorted(chosen, key=lambda c: (-c.mtime, c.name.lower()))
    return sorted(chosen, key=lambda c: (c.alias.lower(), c.key.lower()))


def _in_folder(card: Card, folder: str) -> bool:
    if folder in ("", ALL_FOLDERS):
        return True
    if folder == TOP_LEVEL:
        return card.subfolder == ""
    return card.subfolder == folder or card.subfolder.startswith(folder + "/")


def folders(cards: list[Card]) -> list[str]:
    """Choices of the folder filter: all, top level, then every subfolder (and its parents), sorted."""
    found: set[str] = set()
    for c in cards:
        parts = c.subfolder.split("/") if c.subfolder else []
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return [ALL_FOLDERS, TOP_LEVEL, *sorted(found, key=str.lower)]


# ------------------------------------------------------------------------------------------------ prompt edits
def _join(text: str, addition: str) -> str:
    """``text`` with ``addition`` appended after a comma (nothing doubled when text already ends in one)."""
    text = text.rstrip()
    if not addition:
        return text
    if not text:
        return addition
    return f"{text} {addition}" if text.endswith(",") else f"{text}, {addition}"


def _remove(text: str, piece: str) -> str:
    """``text`` without one occurrence of ``piece`` and the comma that joined it; the rest untouched."""
    if not piece:
        return text
    for pattern in (r",\s*" + re.escape(piece) + r"(?=\s*(,|$))", re.escape(piece) + r"\s*,?\s*"):
        new, n = re.subn(pattern, "", text, count=1)
        if n:
            return new.strip()
    return text


def has_tag(prompt: str, card: Card) -> bool:
    return any(_is_card_tag(m, card) for m in TAG_RE.finditer(prompt))


def toggle_card(prompt: str, negative: str, card: Card) -> tuple[str, str]:
    """A card click, as in A1111: add ``<lora:alias:weight>`` and the activation text (and the negative text to the
    negative prompt); a second click on a card whose tag is already there takes them out again."""
    if has_tag(prompt, card):
        kept = TAG_RE.sub(lambda m: "" if _is_card_tag(m, card) else m.group(0), prompt)
        kept = re.sub(r"\s*,\s*,", ",", kept).strip().strip(",").strip()
        kept = _remove(kept, card.activation_text)
        return kept, _remove(negative, card.negative_text)
    addition = f"{card.tag} {card.activation_text}".strip()
    if card.negative_text and card.negative_text not in negative:
        negative = _join(negative, card.negative_text)
    return _join(prompt, addition), negative


def _is_card_tag(m: re.Match[str], card: Card) -> bool:
    if m.group(1) not in ("lora", "lyco"):
        return False
    try:
        return parse_lora_args(m.group(2), m.group(0)).name in (card.prompt_name, card.name, card.alias)
    except LoradeckError:  # a half-typed tag is not this card's
        return False


# ------------------------------------------------------------------------------------------------ the catalog
class LoraCatalog:
    """The cards of the library's last scan (one per UI, shared by every browser tab), rescanned on request."""

    def __init__(self, studio: Any):
        self.studio = studio
        self._lock = threading.Lock()
        self._cards: list[Card] | None = None
        self._previews: dict[str, Any] = {}  # key -> preview path
        self.errors: list[str] = []

    def cards(self) -> list[Card]:
        if self._cards is None:
            self.refresh()
        assert self._cards is not None
        return self._cards

    def refresh(self) -> list[Card]:
        """Rescan the library (new, changed and removed files) and rebuild the cards."""
        entries = self.studio.loras()
        errors = [e.message for e in self.studio.library.errors()]
        with self._lock:
            self._cards = [card_from_entry(e) for e in entries]
            self._previews = {e.qualified_name: e.preview for e in entries if e.preview is not None}
            self.errors = errors
        return self._cards

    def get(self, key: str) -> Card | None:
        return next((c for c in self.cards() if c.key == key), None)

    def preview_path(self, key: str):
        """The preview file of the card ``key``, or None: only files the library found as previews are served."""
        self.cards()
        return self._previews.get(key)
