"""Where the dialer keeps files holding personal data (staged uploads, exports), and how it creates them.

Files are created 0600 (owner only) in directories that are 0700 and owned by the dialer's user. The default
home is a private data directory, never the system-wide temporary directory: `paths.data_dir`, else
$XDG_DATA_HOME/dialer, else ~/.local/share/dialer. A directory that anyone may write to (mode o+w, like /tmp)
or that another user owns is refused: another local user could plant or swap files there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any


class UnsafeDirectory(Exception):
    """A directory that cannot hold private files. str() is one line naming it and why."""


def default_data_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "dialer"


def data_dir(config: Any) -> Path:
    return Path(config["paths.data_dir"]) if config["paths.data_dir"] else default_data_dir()


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` 0700 if missing (parents too); refuse it when world-writable or owned by someone else."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if info.st_mode & stat.S_IWOTH:
        raise UnsafeDirectory(f"{path} is world-writable (mode {stat.S_IMODE(info.st_mode):o}): files with personal "
                              "data cannot be kept there; use a private directory (mode 700)")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} belongs to another user (uid {info.st_uid}): use a directory of your own")
    return path


def create_private(path: str | os.PathLike[str], mode: str = "w", *, exclusive: bool = False,
                   **kwargs: Any) -> IO[Any]:
    """Open a new file 0600 for writing (`exclusive`: fail if it exists). An existing file is truncated and its
    mode set to 0600 too."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise
