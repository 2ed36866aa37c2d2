"""Text that came from data or an artefact, made safe to show anywhere: control characters
(an ESC sequence can recolour, move the cursor of or retitle a terminal; a line break splits a
one-line message; HTML and Markdown have no use for them) are written out as ``\\xNN``, and the
invisible marks that reorder text (Unicode bidirectional controls: ``'\\u202egnp.exe'`` shows
as ``exe.png``) as ``\\uNNNN``. A byte of a file name that is not UTF-8 is written out as
``\\xNN`` too, so the text can always be written as UTF-8."""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_BYTE_AS_SURROGATE = range(0xDC80, 0xDD00)
"""How Python holds a byte of a file name that is not UTF-8 (``os.fsdecode``'s surrogateescape)."""


def _written_out(char: str) -> str:
    code = ord(char)
    if code in _BYTE_AS_SURROGATE:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible_controls(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) and every byte of a file name that is
    not UTF-8 written out as ``\\xNN``, and every bidirectional control or other lone surrogate as
    ``\\uNNNN``.

    >>> visible_controls("a\\x1b[31mb\\nc")
    'a\\\\x1b[31mb\\\\x0ac'
    """
    return _CONTROL.sub(lambda m: _written_out(m.group()), text)


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")


def hide_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL in it written as
    ``***`` (a ``tune --storage`` URL is recorded and shown, its password never).

    >>> hide_url_passwords("postgresql://tuner:s3cret@db/s")
    'postgresql://tuner:***@db/s'
    """
    return _PASSWORD_IN_URL.sub(r"\1***@", text)
