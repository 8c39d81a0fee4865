"""The `[record] url` setting: which relational store holds the record (pure; no connection here).

  postgresql://user:password@host:port/dbname   production (psycopg 3, pooled); `postgres://` is accepted too
  postgresql:///dbname?host=/run/postgresql      a unix socket directory
  sqlite:///absolute/path/record.db              the embedded default (no server to install)
  (empty)                                        sqlite in <paths.data_dir>/record.db

Anything else is refused with one line naming the setting, so a typo never silently writes the record to a
file nobody backs up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class RecordUrlError(ValueError):
    """The setting is unusable; str(error) says why, in one line."""


@dataclass(frozen=True)
class RecordUrl:
    dialect: str  # "postgresql" or "sqlite"
    url: str  # as given (postgresql: a libpq URI psycopg accepts; sqlite: the file path)

    @property
    def path(self) -> str:
        """The SQLite file (sqlite only)."""
        return self.url

    def sqlalchemy(self) -> str:
        """The same store as an SQLAlchemy URL (for Alembic's migrations only)."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.url}"
        return "postgresql+psycopg://" + self.url.split("://", 1)[1]

    def shown(self) -> str:
        """Fit for a message or a log line: the password hidden."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.url}"
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def parse_record_url(value: str, data_dir: str | Path | None = None) -> RecordUrl:
    """Check `value` (the setting) and say which store it names. `data_dir` is where the default SQLite file
    goes when the setting is empty."""
    text = value.strip()
    if not text:
        if data_dir is None:
            raise RecordUrlError("setting record.url: empty and no data directory for the default SQLite file")
        return RecordUrl("sqlite", str(Path(data_dir) / "record.db"))
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(text)
        if not parts.path.strip("/"):
            raise RecordUrlError("setting record.url: a PostgreSQL URL must name the database "
                                 "(postgresql://user@host:port/dbname)")
        try:
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise RecordUrlError(f"setting record.url: bad port in {RecordUrl('postgresql', text).shown()!r}") from None
        return RecordUrl("postgresql", "postgresql://" + text.split("://", 1)[1])
    if scheme == "sqlite":
        rest = text[len("sqlite://"):]
        if not rest.startswith("/") or len(rest) < 2:
            raise RecordUrlError("setting record.url: expected sqlite:///absolute/path/record.db")
        path = Path(rest[1:] if rest.startswith("//") else rest)  # sqlite:////abs and sqlite:///abs alike
        if not path.is_absolute() or path.name in ("", ".", ".."):
            raise RecordUrlError("setting record.url: expected sqlite:///absolute/path/record.db")
        if ":memory:" in str(path):
            raise RecordUrlError("setting record.url: an in-memory SQLite database would lose the record")
        return RecordUrl("sqlite", str(path))
    raise RecordUrlError(f"setting record.url: expected postgresql://... or sqlite:///path, got scheme "
                         f"{scheme or 'none'!r}")
