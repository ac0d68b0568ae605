"""A notification's mail as wire bytes, without `email.message.EmailMessage`.

Building and flattening an EmailMessage costs milliseconds of CPU per mail (every header
is parsed into a structured object on assignment and refolded on output), and the notify
worker spends more time there than on the relay's replies: it was the largest item of a
mail's CPU cost. A notification's mail has one fixed shape (a few headers, a plain text
part and maybe an HTML part), so it is written here directly:

- headers are one line each when they are ASCII and short, folded at spaces when ASCII
  and long; otherwise RFC 2047 encoded words (UTF-8) folded at 78 columns by
  `email.header.Header`, also for ASCII holding "=?" (a reader would decode it); CR, LF
  and other control characters in a value become spaces (no header injection);
- a display name is quoted when it needs quoting (`email.utils.formataddr`) or encoded
  when it is not ASCII; the address itself must be ASCII (the caller falls back to
  EmailMessage with SMTPUTF8 otherwise);
- a body part is 7bit when it is ASCII with lines of at most 998 octets, else base64 of
  its UTF-8 text: never raw 8-bit octets, which need BODY=8BITMIME;
- lines end in CRLF; the boundary of the alternative parts cannot occur in them.

Any standard parser reads the result as EmailMessage's own output (tests/notify compare
the two).
"""

from __future__ import annotations

import base64
import email.header
import email.utils
import re
import secrets

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
FOLD_AT = 78
CRLF = "\r\n"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(value: str) -> str:
    """A header value on one line: control characters (CR, LF, tabs...) as one space."""
    return _CONTROL.sub(" ", value).strip()


def header(name: str, value: str) -> str:
    """`Name: value` with CRLF, encoded and folded as needed."""
    value = clean(value)
    if value.isascii() and "=?" not in value:
        if len(name) + 2 + len(value) <= FOLD_AT:
            return f"{name}: {value}\r\n"
        words = value.split()
        if all(len(w) < MAX_LINE - len(name) - 2 for w in words):
            return _fold(name, words)
    # Anything else as encoded words, which always split to fit (and keep a literal
    # "=?" from being read as the start of one).
    h = email.header.Header(value, "utf-8", maxlinelen=FOLD_AT, header_name=name)
    return f"{name}: {h.encode(linesep=CRLF)}\r\n"


def _fold(name: str, words: list[str]) -> str:
    """ASCII words on lines of at most 78 columns where they fit (runs of spaces as one)."""
    lines: list[str] = []
    line = f"{name}:"
    for i, w in enumerate(words):
        if i and len(line) + 1 + len(w) > FOLD_AT:
            lines.append(line)
            line = f" {w}"
        else:
            line += f" {w}"
    lines.append(line)
    return CRLF.join(lines) + CRLF


def address(name: str, addr: str) -> str:
    """A mailbox for From or To: `addr`, `Name <addr>`, `"N. Name" <addr>`, or the name
    as encoded words."""
    name = clean(name)
    if not name:
        return addr
    if name.isascii() and "=?" not in name:
        return email.utils.formataddr((name, addr))
    encoded = email.header.Header(name, "utf-8", maxlinelen=FOLD_AT, header_name="To")
    return f"{encoded.encode(linesep=CRLF)} <{addr}>"


def _part(subtype: str, text: str) -> tuple[str, bytes]:
    """(the part's Content-Type and Content-Transfer-Encoding lines, its encoded body)."""
    # Lines break at CR, LF or CRLF only (bytes.splitlines), as EmailMessage does.
    lines = text.encode("utf-8", "replace").splitlines()
    data = b"\r\n".join(lines) + b"\r\n"
    if data.isascii() and all(len(x) <= MAX_LINE for x in lines):
        cte, body = "7bit", data
    else:
        cte, body = "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head, body


def build(headers: list[str], text: str, html: str = "") -> bytes:
    """The whole message: `headers` (each from `header`, CRLF-terminated), then the MIME
    headers and the text part, or a multipart/alternative of text and HTML."""
    out = ["".join(headers), "MIME-Version: 1.0\r\n"]
    plain_head, plain = _part("plain", text)
    if not html:
        return ("".join(out) + plain_head + "\r\n").encode("ascii") + plain
    html_head, html_body = _part("html", html)
    boundary = f"=_ferry_{secrets.token_hex(12)}"
    # '=' never starts a line of base64 and a 7bit part that holds the boundary gets
    # another one: it cannot end a part early.
    while boundary.encode() in plain or boundary.encode() in html_body:
        boundary = f"=_ferry_{secrets.token_hex(12)}"
    out.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1), so each
    # part's own last line break is followed by one more.
    sep = f"--{boundary}\r\n".encode()
    return b"".join(
        [
            "".join(out).encode("ascii"),
            sep,
            plain_head.encode("ascii"),
            b"\r\n",
            plain,
            b"\r\n",
            sep,
            html_head.encode("ascii"),
            b"\r\n",
            html_body,
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )
