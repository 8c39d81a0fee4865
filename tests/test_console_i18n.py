"""Every word the console shows comes from its message catalogues (gateway/static/i18n/en.json and fr.json), so a
French user reads French everywhere, the live board included:

- the page shell (index.html: sign-in, enrolment, the live board and its card template): every text node sits in
  an element with data-i18n="key" (whose English is the text itself), every title, placeholder, alt text and
  aria-label has its data-i18n-* key;
- the scripts (app.js, router.js, pages/*.js...): no string literal that reads as words for people (a sentence, or
  any text handed to textContent, text:, title, alert/confirm/prompt) outside t(...). The few literals that are
  not words for people are listed in ALLOWED with why.
The browser side is tests/test_console_campaigns_browser.py::test_a_french_user_reads_french (the live board and
the sign-in page in French)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "gateway" / "static"
EN = json.loads((STATIC / "i18n" / "en.json").read_text())
FR = json.loads((STATIC / "i18n" / "fr.json").read_text())
LETTERS = re.compile(r"[A-Za-zÀ-ÿ]{2,}")
# Attributes people read, and the data-i18n-* attribute that translates each.
ATTRS = {"title": "data-i18n-title", "placeholder": "data-i18n-placeholder", "alt": "data-i18n-alt",
         "aria-label": "data-i18n-aria"}
# Text that is not a word in any language: machine formats shown as examples.
NOT_WORDS = {"dlr_..."}
VOID = {"meta", "link", "img", "input", "br", "hr"}


class Shell(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.problems: list[str] = []
        self.keys: dict[str, str] = {}  # data-i18n key -> its English text in the page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if self.stack and "data-i18n" in self.stack[-1][1] and tag not in VOID:
            self.problems.append(f"<{tag}> inside data-i18n {self.stack[-1][1]['data-i18n']}: its text replaces it")
        for attr, key_attr in ATTRS.items():
            if LETTERS.search(found.get(attr, "")) and found.get(attr) not in NOT_WORDS and key_attr not in found:
                self.problems.append(f"<{tag} {attr}={found[attr]!r}> has no {key_attr}")
            if key_attr in found and EN.get(found[key_attr]) != found.get(attr):
                self.problems.append(f"{key_attr}={found[key_attr]}: en.json says {EN.get(found[key_attr])!r}, "
                                     f"the page {found.get(attr)!r}")
        if tag not in VOID:
            self.stack.append((tag, found))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if not LETTERS.search(text) or text in NOT_WORDS:
            return
        tag, attrs = self.stack[-1] if self.stack else ("", {})
        if tag in ("script", "style", "code"):
            return
        key = attrs.get("data-i18n")
        if key is None:
            self.problems.append(f"<{tag}> text without data-i18n: {text!r}")
        else:
            self.keys[key] = text


def test_every_text_of_the_page_shell_comes_from_the_catalogues():
    shell = Shell()
    shell.feed((STATIC / "index.html").read_text())
    assert shell.problems == []
    assert len(shell.keys) > 40  # the scan saw the page (sign-in, enrolment, board, card template)
    for key, text in shell.keys.items():
        assert EN.get(key) == text, f"{key}: en.json says {EN.get(key)!r}, index.html {text!r}"
        assert FR.get(key) and (FR[key] != text or text in ("CSV", "Pages")), key


# --- the scripts ---------------------------------------------------------------------------------------------

# Literals that read like words but are not words for people in a language, with why.
ALLOWED = {
    "Content-Type": "an HTTP header name",
    "Authorization": "an HTTP header name",
    "Bearer": "the Authorization scheme",
    "Enter": "a key name (KeyboardEvent.key)",
    "English": "each language is named in itself in the language menu (preferences.js NAMES)",
    "Français": "each language is named in itself in the language menu (preferences.js NAMES)",
    "FR": "an example country code (a placeholder)",
    "login, user., token.": "examples of audit action names (a placeholder): the API's own words",
    "pacing alert over": "a class list (app.js, the live board's pacing line)",
    "hint empty": "a class list (admin-kit.js, an empty table)",
}
# Where a literal becomes text on the page whatever it looks like.
SINKS = re.compile(r"(textContent\s*=|\btext:|\btitle\s*[:=]|placeholder\s*[:=]|\b(?:alert|confirm|prompt)\(|"
                   r"aria-label\"?\s*[:,]|new Error\()\s*$")
KEY = re.compile(r"[a-z_]+(\.[a-z_A-Z0-9]*)+")  # a catalogue key ("lists.fieldname." once ${...} is removed)


def literals(source: str) -> list[tuple[int, str, str]]:
    """(offset, text, code before it) of every string literal of a script; a template literal's ${...} parts
    become a space (the literals inside them are listed too); comments and regular expressions are skipped."""
    found: list[tuple[int, str, str]] = []
    code: list[str] = []  # the script so far without comments, for the context of a literal
    i, n = 0, len(source)

    def template(i: int) -> int:  # source[i] is the opening backtick; returns the index after the closing one
        start, text = i, []
        i += 1
        while source[i] != "`":
            if source[i] == "\\":
                text.append(source[i:i + 2])
                i += 2
            elif source.startswith("${", i):
                text.append(" ")
                i = expression(i + 2)
            else:
                text.append(source[i])
                i += 1
        found.append((start, "".join(text), "".join(code)[-60:]))
        return i + 1

    def expression(i: int) -> int:  # inside ${...}: returns the index after the matching }
        depth = 1
        while depth:
            c = source[i]
            if c == "`":
                i = template(i)
                continue
            if c in "\"'":
                i = quoted(i)
                continue
            depth += {"{": 1, "}": -1}.get(c, 0)
            code.append(c)
            i += 1
        return i

    def quoted(i: int) -> int:
        m = re.compile(r"""(["'])((?:\\.|(?!\1)[^\\\n])*)\1""").match(source, i)
        assert m, f"unterminated string at {i}"
        found.append((i, m.group(2), "".join(code)[-60:]))
        code.append(m.group(0))
        return m.end()

    while i < n:
        c = source[i]
        if c == "`":
            i = template(i)
            code.append('""')
        elif c in "\"'":
            i = quoted(i)
        elif source.startswith("//", i):
            i = source.find("\n", i) if "\n" in source[i:] else n
        elif source.startswith("/*", i):
            i = source.index("*/", i) + 2
        elif c == "/" and re.search(r"[(,=:!&|?;{}\[]\s*$", "".join(code[-4:])):  # a regular expression
            m = re.compile(r"/(?:\\.|\[(?:\\.|[^\]])*\]|[^/\\\n])+/[a-z]*").match(source, i)
            i = m.end() if m else i + 1
            code.append("/re/")
        else:
            code.append(c)
            i += 1
    return found


# Words that are the stylesheets' class names: "note error" is a class list, not a sentence.
CLASSES = set(re.findall(r"\.([a-z][a-z0-9-]*)", "".join(p.read_text() for p in STATIC.glob("*.css"))))


def _reads_as_words(text: str) -> bool:
    """A sentence or a label: two words or more that are not all class names, or one capitalised word ("Pause")."""
    words = [w for w in text.split() if re.fullmatch(r"\(?[A-Za-zÀ-ÿ'-]{2,}[.,:;!?)]*", w)]
    if len(words) < 2:
        return bool(re.fullmatch(r"[A-Z][a-zà-ÿ]{2,}[.!?]?", text))
    return not all(w in CLASSES for w in words)


def untranslated(path: Path, root: Path = STATIC) -> list[str]:
    source = path.read_text()
    found = []
    for offset, raw, before in literals(source):
        text = raw.strip()
        if not LETTERS.search(text) or text in ALLOWED or KEY.fullmatch(text):
            continue
        if text.startswith(("/", "#/", "./", "../")) or "://" in text or text.startswith("#") or "[" in text:
            continue  # an address, a route or a selector
        if re.search(r"\b(?:t|has|import|querySelector(?:All)?|closest|matches|getElementById)\(\s*$", before) \
                or re.search(r"\b(?:import|from)\s*$", before):
            continue  # a message key, a module, a selector
        if SINKS.search(before) or _reads_as_words(text):
            found.append(f"{path.relative_to(root)}:{source.count(chr(10), 0, offset) + 1}: {raw!r}")
    return found


def test_no_words_for_people_in_the_scripts_outside_the_catalogues():
    scripts = sorted(STATIC.rglob("*.js"))
    assert len(scripts) > 10
    problems = [p for path in scripts for p in untranslated(path)]
    assert problems == []


def test_the_scan_finds_untranslated_words(tmp_path):
    # The checks above cannot pass by seeing nothing: they flag what a hurried change would add.
    sample = tmp_path / "sample.js"
    sample.write_text('el.textContent = "offline";\nconst a = `Server ${x} is draining`; // a "Comment here."\n'
                      'const b = t("live.title"); const re = /"[A-Z]+ x"/;\nbutton.title = "live updates";\n'
                      'li.className = "note error"; const k = `lists.state.${s}`; h("b", {}, "no figures yet");\n')
    assert [p.split(": ", 1)[1] for p in untranslated(sample, tmp_path)] == [
        "'offline'", "'Server   is draining'", "'live updates'", "'no figures yet'"]
    shell = Shell()
    shell.feed('<p>Hello there</p><p data-i18n="app.title">Dialer console</p><input placeholder="Your name">')
    assert len(shell.problems) == 2

