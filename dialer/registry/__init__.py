"""National opposition registries (US DNC, Bloctel, TPS/CTPS, DNCL, custom): import and lookup.

The gate reads through `RegistryStore`; imports go through `load_registry` (CLI and RQ job).
"""

from dialer.registry.store import (
    RegistryError,
    RegistryNotLoaded,
    RegistryStore,
    RegistryUnavailable,
    RegistryVersion,
)

__all__ = ["RegistryError", "RegistryNotLoaded", "RegistryStore", "RegistryUnavailable", "RegistryVersion"]
