"""Read the reference transcript of a real Asterisk 22 (tests/data, from shared/asterisk-reference).

Its format: a `banner: ...` line, then each message preceded by `--- t=SECONDS`.
"""

from __future__ import annotations

from pathlib import Path

TRANSCRIPT = Path(__file__).parent / "data" / "ami-transcript-basic-outcomes.txt"


def load_transcript(path: Path = TRANSCRIPT) -> tuple[str, list[tuple[float, list[str]]]]:
    banner = ""
    messages: list[tuple[float, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("banner: "):
            banner = line[len("banner: ") :]
        elif line.startswith("--- t="):
            messages.append((float(line[len("--- t=") :]), []))
        elif messages and line:
            messages[-1][1].append(line)
    return banner, messages


def transcript_wire_bytes(path: Path = TRANSCRIPT) -> bytes:
    """The transcript as Asterisk sent it on the socket."""
    banner, messages = load_transcript(path)
    parts = [banner + "\r\n"]
    parts += ["\r\n".join(lines) + "\r\n\r\n" for _, lines in messages]
    return "".join(parts).encode("utf-8")
