"""The pure rule engine: `rules.evaluate(contact, campaign, facts, at, packs=None) -> Decision`."""

from rules.engine import REASON_CODES, TIME_BASED, evaluate, required_registries
from rules.packs import Pack, PackError, PackSet, Rule, default_packs, load_pack, load_packs

__all__ = ["REASON_CODES", "TIME_BASED", "Pack", "PackError", "PackSet", "Rule", "default_packs", "evaluate",
           "load_pack", "load_packs", "required_registries"]
