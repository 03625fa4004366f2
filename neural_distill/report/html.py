"""``report.html``: one self-contained page (tables and base64-embedded PNGs) that opens from
disk, with no network access and no files beside it."""

import base64
import html

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.9em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
.note { background: #fff6d6; padding: 0.6em 1em; border-left: 4px solid #e0b000; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def _cell(value):
    return html.escape(str(value))


def render(title, rows, pair_rows, details, images, notes):
    """The page: ``rows`` are (figure, teacher, student) strings, ``pair_rows`` (figure, value)
    strings comparing the two models, ``images`` (caption, PNG bytes), ``notes`` strings."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_cell(title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{_cell(title)}</h1>"]
    for note in notes:
        parts.append(f"<p class='note'>{_cell(note)}</p>")
    parts.append("<table><tr><th>figure</th><th>teacher</th><th>student</th></tr>")
    parts += [f"<tr><td>{_cell(a)}</td><td>{_cell(b)}</td><td>{_cell(c)}</td></tr>"
              for a, b, c in rows]
    parts.append("</table><table><tr><th>student vs teacher</th><th></th></tr>")
    parts += [f"<tr><td>{_cell(a)}</td><td>{_cell(b)}</td></tr>" for a, b in pair_rows]
    parts.append("</table>")
    for caption, png in images:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{_cell(caption)}</h2><img alt='{_cell(caption)}' "
                     f"src='data:image/png;base64,{encoded}'>")
    parts.append("<h2>run</h2><ul>")
    parts += [f"<li>{_cell(k)}: <code>{_cell(v)}</code></li>" for k, v in details]
    parts.append("</ul></body></html>")
    return "\n".join(parts)
