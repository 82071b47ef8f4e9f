"""The classroom's join link as people see it: QR codes (terminal, SVG, PNG) and the link with its secret masked.

A core with no server in it, so that the server's instructor page and the notebook dashboard can
show the link without importing the classroom that starts them (:mod:`labkit.classroom`).
"""

from __future__ import annotations

import io

__all__ = ["qr_terminal", "qr_svg", "qr_png", "mask_secret", "ANSI_DARK_ON_LIGHT", "ANSI_RESET"]


def qr_terminal(text: str) -> str:
    """The QR code as text for a terminal, that scans on a dark theme as well as on a light one.

    Half-block characters alone draw the dark modules in the terminal's *foreground* colour, so on a
    dark theme (light text on black) the code comes out inverted and most phone scanners give up.
    Here every character also sets its colours (ANSI: black on white), so the code is dark on light
    whatever the theme, with its quiet zone of four modules."""
    import segno

    qr = segno.make(text, error="m")
    rows = [list(row) for row in qr.matrix_iter(scale=1, border=4)]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    blocks = {(0, 0): " ", (1, 0): "\u2580", (0, 1): "\u2584", (1, 1): "\u2588"}   # (top dark, bottom dark)
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2]):
        lines.append(ANSI_DARK_ON_LIGHT + "".join(blocks[(t, b)] for t, b in zip(top, bottom)) + ANSI_RESET)
    return "\n".join(lines) + "\n"


#: Black foreground on a white background (the 16 basic colours: every terminal has them), and reset.
ANSI_DARK_ON_LIGHT, ANSI_RESET = "\x1b[30;107m", "\x1b[0m"


def qr_svg(text: str, scale: int = 4) -> str:
    import segno

    return segno.make(text, error="m").svg_inline(scale=scale, dark="black", light="white")


def qr_png(text: str, scale: int = 6) -> bytes:
    """The QR code as a PNG (dark on white, with its quiet zone), e.g. for ``IPython.display.Image``."""
    import segno

    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, dark="black", light="white")
    return out.getvalue()


def mask_secret(text: str, secret: str | None, keep: int = 4) -> str:
    """``text`` with ``secret`` shown only by its first ``keep`` characters (for screens and logs)."""
    if not secret:
        return text
    return text.replace(secret, secret[:keep] + "…" if len(secret) > 2 * keep else "…")
