"""The CLI's table boundary: lists that read at any terminal width, from 80 columns up.

Rich's tables shrink every wrappable column to make a wide table fit, down to slivers of a few characters
(or to nothing next to unbreakable ones). Here the layout is decided first and drawn line by line: key values
(ids, handles) keep their full width, a long-text column takes the room that is left and ends in an ellipsis,
a text that matters whole (an error) moves to its own line under the row when it does not fit beside it, and
when the columns still do not fit the least needed ones are left out — said in a footnote; ``--json`` has
everything. Narrower than what the essential columns need, each row becomes a block of ``name: value`` lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.text import Text

GAP = "  "
DETAIL_INDENT = 4


@dataclass(frozen=True)
class Column:
    header: str
    rank: int = 0
    """0: always shown; the highest rank is left out first when the terminal is too narrow."""
    flexible: bool = False
    """Long text: takes the width left over (at least ``min_width``) and ends in an ellipsis."""
    min_width: int = 12
    detail: bool = False
    """Text that matters whole (an error): a column if it fits there in full, else its own line under each row."""
    justify: Literal["left", "right"] = "left"


Cell = str | Text


def fit(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> RenderableType:
    """``rows`` (one cell per column) as a list at most ``width`` characters wide."""
    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    natural = [max([len(col.header), *(row[i].cell_len for row in cells)]) for i, col in enumerate(columns)]

    def least(i: int) -> int:
        return min(natural[i], columns[i].min_width) if columns[i].flexible else natural[i]

    def needed(indexes: list[int]) -> int:
        return sum(least(i) for i in indexes) + len(GAP) * (len(indexes) - 1)

    details = [i for i, col in enumerate(columns) if col.detail]
    shown = [i for i in range(len(columns)) if i not in details]
    while needed(shown) > width and any(columns[i].rank > 0 for i in shown):
        shown.remove(max(reversed(shown), key=lambda i: columns[i].rank))
    if needed(shown) > width:
        return _records(title, columns, cells, width)
    for i in details:  # beside the row if it fits there whole, next to every other column shown
        if needed(shown) + len(GAP) + natural[i] <= width:
            shown.append(i)
    shown.sort()
    below = [i for i in details if i not in shown]
    widths = _share(width - needed(shown), {i: least(i) for i in shown}, natural, columns)

    def line(row: Sequence[Text]) -> Text:
        parts = []
        for i, cell in zip(shown, row, strict=True):
            text = cell.copy()
            text.truncate(widths[i], overflow="ellipsis")
            pad = " " * (widths[i] - text.cell_len)
            parts.append(Text(pad) + text if columns[i].justify == "right" else text + pad)
        joined = Text(GAP, no_wrap=True).join(parts)
        joined.rstrip()
        return joined

    table_width = sum(widths.values()) + len(GAP) * (len(shown) - 1)
    out: list[RenderableType] = [
        Text(title, "italic", no_wrap=True, overflow="ellipsis"),
        line([Text(columns[i].header, "bold") for i in shown]),
        Text("─" * table_width, "dim"),
    ]
    for row in cells:
        out.append(line([row[i] for i in shown]))
        out += [Padding(row[i], (0, 0, 0, DETAIL_INDENT), expand=False) for i in below if row[i].plain not in ("", "-")]
    left_out = [col.header for i, col in enumerate(columns) if i not in shown and i not in below]
    if left_out:
        out.append(Text(f"not shown at this width: {', '.join(left_out)} (see --json)", "dim"))
    return Group(*out)


def _share(spare: int, widths: dict[int, int], natural: list[int], columns: Sequence[Column]) -> dict[int, int]:
    """The room left goes to the long-text columns that want more, the most needed (lowest rank) first."""
    for i in sorted(widths, key=lambda i: columns[i].rank):
        grow = min(spare, natural[i] - widths[i])
        widths[i] += grow
        spare -= grow
    return widths


def _records(title: str, columns: Sequence[Column], cells: list[list[Text]], width: int) -> RenderableType:
    """Each row as ``header: value`` lines: nothing is cut, long values wrap."""
    from rich.table import Table

    label = max(len(col.header) for col in columns) + 1
    parts: list[RenderableType] = [Text(title, "italic")]
    for row in cells:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=label, style="bold", no_wrap=True)
        grid.add_column(width=max(1, width - label - 1), overflow="fold")
        for col, cell in zip(columns, row, strict=True):
            grid.add_row(f"{col.header}:", cell)
        parts += [Text(""), grid]
    return Group(*parts)


def show(console: Console, renderable: RenderableType) -> None:
    """Print at the console's width (the list was fitted to it; soft wrapping would let rich crop it instead)."""
    console.print(renderable, soft_wrap=False, highlight=False)


def one_line(text: str) -> str:
    """Free text for a list cell: its lines joined, so a row stays one line."""
    return " ".join(text.split())


def when(iso: str | None, now: datetime | None = None) -> str:
    """An ISO 8601 instant as people read it in a list: ``12s ago``, ``5m ago``, ``in 2h``; ``-`` for none."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    amount = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if amount >= size:
            text = f"{int(amount // size)}{unit}"
            break
    else:
        text = f"{int(amount)}s"
    return f"{text} ago" if seconds >= 0 else f"in {text}"
