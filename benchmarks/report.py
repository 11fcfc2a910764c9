"""What the benchmark scripts print: ratios and Markdown tables."""

from __future__ import annotations


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table, every column as wide as its widest cell."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    lines = [fmt.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join([*lines, *(fmt.format(*map(str, r)) for r in rows)])
