"""Words that make a forwarded reply (an SMS, a chat message) an opt-out, by language, and their matching.

Data, not code: a lawyer or an operator changes a row here, and each tenant can pick its languages and add
its own words (`t:{tenant}:optout_keywords`, through `PUT /v1/optout-keywords`). Matching is forgiving about
what people type: case, accents, apostrophes and punctuation are ignored ("Arrêtez de m'appeler", "arretez de
m appeler" and "ARRETEZ DE M’APPELER" are the same), and a keyword counts as whole words anywhere in the text
("Please STOP" yes, "nonstop" no). When in doubt the caller can always record an explicit opt-out (no keyword).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# en: the US FCC's list of revocation words (47 CFR 64.1200(a)(10)), applied everywhere.
# fr: what French speakers reply (the CNIL and the Bloctel operator advise honouring any clear refusal; STOP is
# the SMS standard of the French operators' code of conduct, "STOP SMS" / "STOP 36180").
KEYWORDS: dict[str, tuple[str, ...]] = {
    "en": ("STOP", "QUIT", "END", "REVOKE", "OPT OUT", "OPTOUT", "CANCEL", "UNSUBSCRIBE", "STOP ALL",
           "DO NOT CALL", "DON'T CALL", "REMOVE ME"),
    "fr": ("STOP", "ARRET", "ARRÊT", "ARRETEZ", "ARRÊTEZ", "ARRÊTER", "DESINSCRIPTION", "DÉSINSCRIPTION",
           "DESINSCRIRE", "DÉSINSCRIRE", "DESABONNER", "DÉSABONNER", "DÉSABONNEMENT", "DESABONNEMENT",
           "NE PLUS M'APPELER", "NE M'APPELEZ PLUS", "ARRÊTEZ DE M'APPELER", "RETIREZ MOI", "OPPOSITION"),
}
LANGUAGES = tuple(KEYWORDS)
MAX_EXTRA = 100


def normalize(text: str) -> str:
    """Upper case, accents off, every run of non-letters/digits one space: "m'appeler" -> "M APPELER"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.findall(r"[^\W_]+", plain.upper()))


def settings_key(tenant: str) -> str:
    return f"t:{{{tenant}}}:optout_keywords"


def tenant_settings(raw: str | bytes | None) -> dict[str, Any]:
    """The stored JSON, or the default: every language, no extra word."""
    doc = json.loads(raw) if raw else {}
    return {"languages": list(doc.get("languages") or LANGUAGES), "extra": list(doc.get("extra") or [])}


def keywords(settings: dict[str, Any]) -> list[str]:
    words: list[str] = []
    for language in settings["languages"]:
        words.extend(KEYWORDS.get(language, ()))
    return [*words, *settings["extra"]]


def matches(text: str, words: Iterable[str]) -> str | None:
    """The first keyword found in `text` as whole words, or None."""
    haystack = f" {normalize(text)} "
    for word in words:
        needle = normalize(word)
        if needle and f" {needle} " in haystack:
            return word
    return None
