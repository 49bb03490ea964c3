"""Where each key of a TOML text is written: its line, so that an error can point at it.

``tomllib`` gives values, not positions. ``key_lines`` walks the text once more and
records the line of every key path it meets, as the validated data names it:
``("scenarios", "S08", "every_days")``, and array items by index (``("catalogue",
"KOSO-30", "cross", 1)``, ``("fruits", 0, "name")`` for ``[[fruits]]``). It knows
table headers (``[a."b c"]``, ``[[a.b]]``), dotted keys (``a.b = 1``), inline tables
(``x = { y = 1 }``), quoted keys and multi-line strings and arrays. It reads only
text that ``tomllib`` has already accepted, so it does not validate; on anything it
does not understand it stops and returns what it found, and ``line_of`` then falls
back to the nearest enclosing key it knows.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

Path = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


def key_lines(text: str) -> dict[Path, int]:
    """Every key path of ``text`` → the 1-based line it is first written on."""
    scanner = _Scanner(text)
    try:
        scanner.document()
    except (IndexError, ValueError):  # not TOML after all: keep what was found
        pass
    return scanner.lines


def line_of(lines: dict[Path, int], path: Sequence[str | int]) -> int | None:
    """The line of ``path``, or of its nearest enclosing key that ``lines`` knows (a key that is
    missing is reported on its table's line); None when not even the first key is known."""
    path = tuple(path)
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is None and isinstance(path[end - 1], int):  # a dict key pydantic gave as an int
            found = lines.get((*path[:end - 1], str(path[end - 1])))
        if found is not None:
            return found
    return None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[Path, int] = {}
        self.arrays: dict[Path, int] = {}  # [[array]] of tables → how many seen

    def line(self, at: int | None = None) -> int:
        return bisect_right(self.newlines, (self.at if at is None else at) - 1) + 1

    def peek(self, ahead: int = 0) -> str:
        at = self.at + ahead
        return self.text[at] if at < len(self.text) else ""

    def record(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)

    # --- the document: headers and key/value lines --------------------------------------

    def document(self) -> None:
        table: Path = ()
        while True:
            self.blank(newlines=True)
            if self.at >= len(self.text):
                return
            line = self.line()
            if self.text.startswith("[[", self.at):
                self.at += 2
                keys = self.key()
                self.expect("]]")
                table = self.array_table(keys, line)
            elif self.peek() == "[":
                self.at += 1
                keys = self.key()
                self.expect("]")
                table = self.resolve(keys)
                for end in range(1, len(table) + 1):
                    self.record(table[:end], line)
            else:
                self.keyval(table)

    def resolve(self, keys: list[str]) -> Path:
        """A header's keys as a data path: a key naming an array of tables means its latest table."""
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def array_table(self, keys: list[str], line: int) -> Path:
        parent = self.resolve(keys[:-1])
        array = (*parent, keys[-1])
        index = self.arrays.get(array, 0)
        self.arrays[array] = index + 1
        for end in range(1, len(array) + 1):
            self.record(array[:end], line)
        self.record((*array, index), line)
        return (*array, index)

    def keyval(self, table: Path) -> None:
        line = self.line()
        path = table
        for key in self.key():
            path = (*path, key)
            self.record(path, line)
        self.blank()
        self.expect("=")
        self.blank()
        self.value(path)

    # --- keys and values ---------------------------------------------------------------

    def key(self) -> list[str]:
        keys = []
        while True:
            self.blank()
            keys.append(self.simple_key())
            self.blank()
            if self.peek() != ".":
                return keys
            self.at += 1

    def simple_key(self) -> str:
        if self.peek() in ('"', "'"):
            return self.string()
        start = self.at
        while self.peek() in _BARE and self.peek():
            self.at += 1
        if start == self.at:
            raise ValueError(f"no key at {self.line()}")
        return self.text[start:self.at]

    def value(self, path: Path) -> None:
        first = self.peek()
        if first in ('"', "'"):
            self.string()
        elif first == "[":
            self.array(path)
        elif first == "{":
            self.inline_table(path)
        else:  # a number, a boolean, a date-time (which may hold a space): up to the next delimiter
            while self.peek() and self.peek() not in ",]}\n#":
                self.at += 1

    def array(self, path: Path) -> None:
        self.at += 1
        index = 0
        while True:
            self.blank(newlines=True)
            if self.peek() == "]":
                self.at += 1
                return
            self.record((*path, index), self.line())
            self.value((*path, index))
            index += 1
            self.blank(newlines=True)
            if self.peek() == ",":
                self.at += 1

    def inline_table(self, path: Path) -> None:
        self.at += 1
        while True:
            self.blank(newlines=True)  # newlines: TOML 1.1 allows them; harmless for 1.0
            if self.peek() == "}":
                self.at += 1
                return
            self.keyval(path)
            self.blank(newlines=True)
            if self.peek() == ",":
                self.at += 1

    def string(self) -> str:
        quote = self.peek()
        if self.text.startswith(quote * 3, self.at):
            self.at += 3
            while not self.text.startswith(quote * 3, self.at):
                self.at += 2 if self.text[self.at] == "\\" and quote == '"' else 1
            while self.text.startswith(quote * 4, self.at):  # up to two quotes may end the content
                self.at += 1
            self.at += 3
            return ""  # a multi-line string is never a key
        self.at += 1
        out = []
        while (c := self.text[self.at]) != quote:
            if c == "\\" and quote == '"':
                out.append(self.escape())
                continue
            out.append(c)
            self.at += 1
        self.at += 1
        return "".join(out)

    def escape(self) -> str:
        code = self.text[self.at + 1]
        if code in "uU":
            size = 4 if code == "u" else 8
            self.at += 2 + size
            return chr(int(self.text[self.at - size:self.at], 16))
        self.at += 2
        return _ESCAPES.get(code, code)

    def blank(self, newlines: bool = False) -> None:
        """Skip spaces and comments (and line ends too, where ``newlines``)."""
        while self.at < len(self.text):
            c = self.text[self.at]
            if c == "#":
                end = self.text.find("\n", self.at)
                self.at = len(self.text) if end < 0 else end
            elif c in " \t\r" or (newlines and c == "\n"):
                self.at += 1
            else:
                return

    def expect(self, token: str) -> None:
        self.blank()
        if not self.text.startswith(token, self.at):
            raise ValueError(f"expected {token!r} at line {self.line()}")
        self.at += len(token)
