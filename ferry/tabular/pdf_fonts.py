"""A TrueType font with Greek glyphs for PDFs (reportlab's bundled Vera has none).

DejaVu Sans is looked up in the usual system places (Debian/Ubuntu package fonts-dejavu-core,
Fedora, Alpine, macOS Homebrew). Without it PDFs fall back to Helvetica, and non-Latin text
shows as empty boxes; that is logged once as a warning so an operator can install the font.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

log = logging.getLogger(__name__)

_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/opt/homebrew/share/fonts",
    "/Library/Fonts",
)


@functools.cache
def font_pair(directory: str | None = None) -> tuple[str, str]:
    """(regular, bold) font names registered with reportlab, DejaVu Sans when found."""
    dirs = (directory,) if directory else _DIRS
    for d in dirs:
        regular, bold = Path(d, "DejaVuSans.ttf"), Path(d, "DejaVuSans-Bold.ttf")
        if regular.is_file():
            pdfmetrics.registerFont(TTFont("FerrySans", str(regular)))
            bold_name = "FerrySans"
            if bold.is_file():
                pdfmetrics.registerFont(TTFont("FerrySans-Bold", str(bold)))
                bold_name = "FerrySans-Bold"
            return "FerrySans", bold_name
    log.warning("no DejaVuSans.ttf found in %s; PDFs fall back to Helvetica (no Greek)", dirs)
    return "Helvetica", "Helvetica-Bold"
