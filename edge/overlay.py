"""``--overlay``: one PNG per frame, each tile tinted by its class, with a legend.

Layout of ``OUT/overlays/<frame>.png`` (the frame name percent-encoded, so ``sub/a.png``
becomes ``sub%2Fa.png.png``): the frame, shown 512 to 1024 px wide (scaled from its own
width), each pixel tinted with the colour of the tile whose centre is nearest (so that
overlapping tiles from a small ``--stride`` do not blend), thin dark lines between tiles,
uncertain tiles (``--min-confidence``) hatched with white diagonal stripes over a faint
tint of their best class; where the bundle classifies only a crop of the frame
(``centre-square``), the rest is darkened and untinted; under it a legend strip: the
frame's name and tile count, then one swatch per class with its share of the frame's tiles.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from edge.atomic_file import write_bytes_atomic
from edge.options import UNCERTAIN

# BGR colours for the AI4Mars classes; other class names take the palette in order.
CLASS_COLOURS = {
    "soil": (40, 120, 205),
    "bedrock": (190, 110, 50),
    "sand": (60, 215, 245),
    "big rock": (60, 50, 215),
}
PALETTE = [(80, 175, 75), (180, 80, 170), (200, 190, 60), (120, 120, 120), (0, 140, 255)]
TINT = 0.42
FAINT = 0.2
MIN_WIDTH, MAX_WIDTH = 512, 1024
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_NAME = 180


def class_colours(classes: list[str]) -> list[tuple[int, int, int]]:
    """One BGR colour per class."""
    spare = iter(PALETTE * (1 + len(classes) // len(PALETTE)))
    return [CLASS_COLOURS.get(c) or next(spare) for c in classes]


def overlay_file_name(frame: str) -> str:
    """A filesystem-safe, collision-free file name for a frame's overlay PNG."""
    safe = quote(frame, safe="")
    if len(safe) > MAX_NAME:
        safe = safe[:MAX_NAME] + "-" + hashlib.sha1(frame.encode()).hexdigest()[:12]
    return safe + ".png"


def to_display(image: np.ndarray) -> np.ndarray:
    """Decoded frame (H, W[, C]) of any supported type -> BGR uint8 (H, W, 3)."""
    if image.dtype == np.uint16:
        img = (image >> 8).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        # NaN (missing data) outside a bundle's crop is shown black, not cast undefined.
        finite = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
        img = np.clip(finite * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        img = image.astype(np.uint8, copy=False)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img


def _nearest(centres: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Index of the nearest of sorted ``centres`` for each coordinate."""
    mids = (centres[1:] + centres[:-1]) / 2.0
    return np.searchsorted(mids, coords)


def grid_axes(ref_boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``(iy, ix)``: for each display row and column (of a ``width`` x ``height`` picture),
    the index of the tile row/column whose centre on the reference grid is nearest. Tiles
    are row-major, so the tile at pixel (y, x) is ``iy[y] * len(unique x centres) + ix[x]``."""
    xs = np.unique(ref_boxes[:, 0] + ref_boxes[:, 2] / 2.0)
    ys = np.unique(ref_boxes[:, 1] + ref_boxes[:, 3] / 2.0)
    ref_w = float((ref_boxes[:, 0] + ref_boxes[:, 2]).max())
    ref_h = float((ref_boxes[:, 1] + ref_boxes[:, 3]).max())
    ix = _nearest(xs, (np.arange(width) + 0.5) * ref_w / width)
    iy = _nearest(ys, (np.arange(height) + 0.5) * ref_h / height)
    return iy, ix


def _legend(width: int, entries: list[tuple[str, tuple[int, int, int], bool]],
            title: str) -> np.ndarray:
    """A dark strip: the title line, then swatches with labels, wrapped to ``width``."""
    scale, line = 0.5, 24
    rows: list[list[tuple[str, tuple[int, int, int], bool, int]]] = [[]]
    x = 8
    for text, colour, hatched in entries:
        w = 22 + cv2.getTextSize(text, FONT, scale, 1)[0][0] + 16
        if x + w > width and rows[-1]:
            rows.append([])
            x = 8
        rows[-1].append((text, colour, hatched, x))
        x += w
    strip = np.full((line * (len(rows) + 1) + 6, width, 3), 32, np.uint8)
    cv2.putText(strip, title, (8, 17), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    for r, row in enumerate(rows, start=1):
        y = line * r + 4
        for text, colour, hatched, x0 in row:
            cv2.rectangle(strip, (x0, y), (x0 + 16, y + 16), colour, -1)
            if hatched:
                for d in range(-16, 17, 6):
                    cv2.line(strip, (x0 + max(d, 0), y + max(-d, 0)),
                             (x0 + min(16 + d, 16), y + min(16 - d, 16)), (255, 255, 255), 2)
            cv2.rectangle(strip, (x0, y), (x0 + 16, y + 16), (200, 200, 200), 1)
            cv2.putText(strip, text, (x0 + 22, y + 13), FONT, scale, (235, 235, 235), 1,
                        cv2.LINE_AA)
    return strip


def _tint_grid(frame: np.ndarray, ref_boxes: np.ndarray, class_ids: np.ndarray,
               uncertain: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The picture BGR uint8 (h, w, 3) of the part of a frame that the tile grid covers,
    each pixel tinted by the tile of nearest centre, uncertain tiles hatched, thin dark
    lines between tiles."""
    out_h, out_w = frame.shape[:2]
    iy, ix = grid_axes(ref_boxes, out_w, out_h)
    n_x = len(np.unique(ref_boxes[:, 0]))
    grid_ids = np.asarray(class_ids).reshape(-1, n_x)  # (rows, cols) of tiles
    grid_unc = np.asarray(uncertain, bool).reshape(-1, n_x)
    # iy, ix are non-decreasing: each tile's display cell is a run of rows times a run of cols
    rows_per = np.bincount(iy, minlength=grid_ids.shape[0])
    cols_per = np.bincount(ix, minlength=n_x)
    colour = np.repeat(np.repeat(palette[grid_ids], rows_per, axis=0), cols_per, axis=1)
    shown = cv2.addWeighted(frame, 1 - TINT, colour, TINT, 0)
    row0 = np.concatenate([[0], np.cumsum(rows_per)])
    col0 = np.concatenate([[0], np.cumsum(cols_per)])
    for r, c in zip(*np.nonzero(grid_unc), strict=True):
        ys, xs = slice(row0[r], row0[r + 1]), slice(col0[c], col0[c + 1])
        cell = cv2.addWeighted(frame[ys, xs], 1 - FAINT, colour[ys, xs], FAINT, 0)
        stripes = (np.add.outer(np.arange(ys.start, ys.stop), np.arange(xs.start, xs.stop))
                   // 5) % 3 == 0
        cell[stripes] = (cell[stripes] * 0.3 + 178).astype(np.uint8)
        shown[ys, xs] = cell
    shown[row0[1:-1], :] //= 2  # thin dark lines between tiles
    shown[:, col0[1:-1]] //= 2
    return shown


def render_overlay(image: np.ndarray, ref_boxes: np.ndarray, class_ids: np.ndarray,
                   uncertain: np.ndarray, classes: list[str], title: str,
                   show_uncertain: bool = False,
                   crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The overlay picture BGR uint8 (H', W', 3) of a frame (H, W[, C]) and its tiles:
    ref_boxes int (N, 4) on the reference grid (row-major), class_ids int (N,),
    uncertain bool (N,). ``crop`` ``(x, y, w, h)``, in the frame's pixels, is the part the
    grid covers (a bundle's ``centre-square`` crop; default: the whole frame); the rest of
    the frame, which was not classified, is shown darkened and untinted."""
    frame = to_display(image)
    height, width = frame.shape[:2]
    out_w = int(min(max(width, MIN_WIDTH), MAX_WIDTH))
    out_h = max(1, round(height * out_w / width))
    interp = cv2.INTER_NEAREST if out_w > width else cv2.INTER_AREA
    frame = cv2.resize(frame, (out_w, out_h), interpolation=interp)
    palette = np.asarray(class_colours(classes), np.uint8)
    x, y, w, h = crop if crop is not None else (0, 0, width, height)
    x0, y0 = min(round(x * out_w / width), out_w - 1), min(round(y * out_h / height), out_h - 1)
    x1 = max(round((x + w) * out_w / width), x0 + 1)  # at least one display pixel
    y1 = max(round((y + h) * out_h / height), y0 + 1)
    if (x0, y0, x1, y1) == (0, 0, out_w, out_h):
        shown = _tint_grid(frame, ref_boxes, class_ids, uncertain, palette)
    else:
        shown = frame // 3  # outside the grid: not classified
        shown[y0:y1, x0:x1] = _tint_grid(frame[y0:y1, x0:x1], ref_boxes, class_ids,
                                         uncertain, palette)

    n = max(1, len(class_ids))
    counts = np.bincount(np.asarray(class_ids)[~np.asarray(uncertain, bool)],
                         minlength=len(classes))
    entries = [(f"{c} {counts[i] / n:.0%}", tuple(int(v) for v in palette[i]), False)
               for i, c in enumerate(classes)]
    if show_uncertain:
        entries.append((f"{UNCERTAIN} {int(np.sum(uncertain)) / n:.0%}", (90, 90, 90), True))
    return np.vstack([shown, _legend(out_w, entries, title)])


def write_png(path: Path, picture: np.ndarray) -> Path:
    """Encode a PNG (fast compression) and write it via a temporary file."""
    ok, data = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"cannot encode {path.name} as PNG")
    return write_bytes_atomic(path, data.tobytes(), fsync=False)
