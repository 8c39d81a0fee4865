"""The sandbox PBX's AstDB: Asterisk's small persistent key/value store (main/db.c), in memory.

Keys are stored as Asterisk stores them, `/family/key`; a tree is a key prefix ending at a `/` boundary (Asterisk's
`key || '/' LIKE prefix || '/%'`), listed in key order. The store outlives `Pbx.reset()` (an Asterisk restart),
as astdb.sqlite3 does on a real server: that is what lets the dialplan keep an opt-out the dialer has not read yet.
"""

from __future__ import annotations

MAX_KEY = 253  # Asterisk: family and key together must fit MAX_DB_FIELD (256) with the slashes


class AstDB:
    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    @staticmethod
    def _full(family: str, key: str) -> str | None:
        if len(family) + len(key) + 2 > MAX_KEY:
            return None
        return f"/{family}/{key}"

    @staticmethod
    def _prefix(family: str, key: str = "") -> str:
        return f"/{family}/{key}" if key else f"/{family}" if family else ""

    def put(self, family: str, key: str, value: str) -> bool:
        full = self._full(family, key)
        if full is None:
            return False
        self.entries[full] = value
        return True

    def get(self, family: str, key: str) -> str | None:
        full = self._full(family, key)
        return None if full is None else self.entries.get(full)

    def delete(self, family: str, key: str) -> bool:
        full = self._full(family, key)
        return full is not None and self.entries.pop(full, None) is not None

    def tree(self, family: str = "", key: str = "") -> list[tuple[str, str]]:
        """(full key, value) under the family (and key tree), in key order; everything without a family."""
        prefix = self._prefix(family, key)
        return sorted((k, v) for k, v in self.entries.items() if not prefix or (k + "/").startswith(prefix + "/"))

    def delete_tree(self, family: str = "", key: str = "") -> int:
        doomed = [k for k, _ in self.tree(family, key)]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    # Dialplan functions (func_db): DB(family/key) reads and writes, DB_DELETE(family/key) reads and deletes.

    @staticmethod
    def split(arg: str) -> tuple[str, str]:
        family, _, key = arg.strip().partition("/")
        return family, key

    def read_function(self, arg: str) -> str:
        return self.get(*self.split(arg)) or ""

    def delete_function(self, arg: str) -> str:
        family, key = self.split(arg)
        value = self.get(family, key)
        self.delete(family, key)
        return value or ""
