"""Formula-injection safety for spreadsheet cells (csv, xlsx).

A spreadsheet treats a cell that begins with `=`, `+`, `-` or `@` as a formula, and tab, CR
and NUL can smuggle one past a naive check. OWASP's advice is to prefix such a cell with a
single quote, which spreadsheets show as text. To make the scheme exactly reversible, a
string whose leading run of quotes is followed by a trigger also gets one more quote, so
`restore(neutralise(s)) == s` for every string, and a plain `'tis` is left alone both ways.
Only strings are ever touched: a negative number stays a number.
"""

from __future__ import annotations

TRIGGERS = frozenset("=+-@\t\r\0")
QUOTE = "'"
# First characters that may need a look (a trigger, or a quote run that may hide one).
SUSPECT = TRIGGERS | {QUOTE}


def _needs_quote(s: str) -> bool:
    rest = s.lstrip(QUOTE)
    return bool(rest) and rest[0] in TRIGGERS


def neutralise(s: str) -> str:
    """`s` made safe to put in a spreadsheet cell (unchanged when it already is)."""
    if s and s[0] in SUSPECT and _needs_quote(s):
        return QUOTE + s
    return s


def restore(s: str) -> str:
    """The string `neutralise` was given, for a cell read back from a file."""
    if s and s[0] == QUOTE and _needs_quote(s):
        return s[1:]
    return s
