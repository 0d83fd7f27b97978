"""Write a ``Document`` (``calf.report.tables.document``) as Markdown, LaTeX or HTML text.

- Markdown: GitHub tables, a heading per block, bold as ``**x**``, notes as paragraphs.
- LaTeX: a fragment to ``\\input``, one ``table`` float per block in booktabs style (needs
  ``\\usepackage{booktabs,graphicx}``; a table wider than the text is scaled down to fit),
  the document caption in every table's caption, bold
  as ``\\textbf{x}``, markers as ``\\textsuperscript``; every text is escaped.
- HTML: a standalone UTF-8 page, bold as ``<b>``, markers as ``<sup>``.
"""

from __future__ import annotations

import html
import re
from itertools import groupby

from calf.report.tables.document import Block, Cell, Document

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "–": "--", "−": "$-$", "†": r"\dag{}", "‡": r"\ddag{}", "§": r"\S{}",
    "¶": r"\P{}", "‖": r"\textbardbl{}", "α": r"$\alpha$", "×": r"$\times$", "·": r"$\cdot$",
    "≈": r"$\approx$", "<": r"\textless{}", ">": r"\textgreater{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))
_MARKDOWN_RE = re.compile(r"([\\`*_|<])")


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX running text (specials escaped, symbols as commands)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def markdown_escape(text: str) -> str:
    """``text`` shown literally in a Markdown table cell or paragraph."""
    return _MARKDOWN_RE.sub(r"\\\1", text)


def _spans(block: Block) -> list[tuple[str, int, int]]:
    """(group, first column index, count) for runs of consecutive columns."""
    spans, start = [], 0
    for group, members in groupby(block.columns, key=lambda c: c.group):
        count = len(list(members))
        spans.append((group, start, count))
        start += count
    return spans


def to_markdown(doc: Document) -> str:
    def cell(c: Cell) -> str:
        text = markdown_escape(c.text)
        text = f"**{text}**" if c.bold else text
        return text + markdown_escape(c.markers)

    lines = [f"# {markdown_escape(doc.title)}", ""]
    for paragraph in doc.caption:
        lines += [markdown_escape(paragraph), ""]
    for block in doc.blocks:
        heads = [f"{c.group} {c.label}" if c.group else c.label for c in block.columns]
        lines += [f"## {markdown_escape(block.title)}", ""]
        lines.append("| " + " | ".join(markdown_escape(h) for h in heads) + " |")
        lines.append("|" + "|".join("---:" if c.numeric else ":---" for c in block.columns) + "|")
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in block.rows]
        lines.append("")
        for note in block.notes:
            lines += [markdown_escape(note), ""]
    return "\n".join(lines)


def to_latex(doc: Document) -> str:
    def cell(c: Cell) -> str:
        text = latex_escape(c.text)
        text = rf"\textbf{{{text}}}" if c.bold else text
        return text + (rf"\textsuperscript{{{latex_escape(c.markers)}}}" if c.markers else "")

    caption = " ".join(latex_escape(p) for p in doc.caption)
    lines = [f"% {doc.title}",
             "% LaTeX fragment for \\input; needs \\usepackage{booktabs,graphicx}", ""]
    for block in doc.blocks:
        spec = "".join("r" if c.numeric else "l" for c in block.columns)
        lines += [r"\begin{table}[htbp]", r"\centering",
                  rf"\caption{{{latex_escape(block.title)}. {caption}}}",
                  r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%",
                  rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
        spans = _spans(block)
        if any(group for group, _, _ in spans):
            tops, rules = [], []
            for group, start, count in spans:
                if group:
                    tops.append(rf"\multicolumn{{{count}}}{{c}}{{{latex_escape(group)}}}")
                    rules.append(rf"\cmidrule(lr){{{start + 1}-{start + count}}}")
                else:
                    tops += [""] * count
            lines += [" & ".join(tops) + r" \\", " ".join(rules)]
        lines.append(" & ".join(latex_escape(c.label) for c in block.columns) + r" \\")
        lines.append(r"\midrule")
        lines += [" & ".join(cell(c) for c in row) + r" \\" for row in block.rows]
        lines += [r"\bottomrule", r"\end{tabular}}"]
        if block.notes:
            lines += [r"\par\smallskip", r"\begin{minipage}{\textwidth}\footnotesize",
                      "\n\n".join(latex_escape(n) for n in block.notes), r"\end{minipage}"]
        lines += [r"\end{table}", ""]
    return "\n".join(lines)


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
    "th,td{padding:.2em .6em}thead{border-top:2px solid #000;border-bottom:1px solid #000}"
    "tbody{border-bottom:2px solid #000}td.num,th.num{text-align:right}"
    "td.text,th.text{text-align:left}th.group{text-align:center;border-bottom:1px solid #888}"
    "p.note{font-size:.85em;max-width:60em}"
)


def to_html(doc: Document) -> str:
    def align(numeric: bool) -> str:
        return "num" if numeric else "text"

    def cell(c: Cell, numeric: bool) -> str:
        text = html.escape(c.text)
        text = f"<b>{text}</b>" if c.bold else text
        text += f"<sup>{html.escape(c.markers)}</sup>" if c.markers else ""
        return f'<td class="{align(numeric)}">{text}</td>'

    out = ["<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8">',
           f"<title>{html.escape(doc.title)}</title>", f"<style>{_STYLE}</style></head>",
           "<body>", f"<h1>{html.escape(doc.title)}</h1>"]
    out += [f"<p>{html.escape(p)}</p>" for p in doc.caption]
    for block in doc.blocks:
        out += ["<section>", f"<h2>{html.escape(block.title)}</h2>", "<table>", "<thead>"]
        spans = _spans(block)
        if any(group for group, _, _ in spans):
            top, bottom = [], []
            for group, start, count in spans:
                columns = block.columns[start:start + count]
                if group:
                    top.append(f'<th class="group" colspan="{count}">{html.escape(group)}</th>')
                    bottom += [f'<th class="{align(c.numeric)}">{html.escape(c.label)}</th>'
                               for c in columns]
                else:
                    top += [f'<th class="{align(c.numeric)}" rowspan="2">{html.escape(c.label)}'
                            "</th>" for c in columns]
            out += ["<tr>" + "".join(top) + "</tr>", "<tr>" + "".join(bottom) + "</tr>"]
        else:
            heads = (f'<th class="{align(c.numeric)}">{html.escape(c.label)}</th>'
                     for c in block.columns)
            out.append("<tr>" + "".join(heads) + "</tr>")
        out.append("</thead>")
        out.append("<tbody>")
        out += ["<tr>" + "".join(cell(c, col.numeric)
                                 for c, col in zip(row, block.columns, strict=True)) + "</tr>"
                for row in block.rows]
        out += ["</tbody>", "</table>"]
        out += [f'<p class="note">{html.escape(n)}</p>' for n in block.notes]
        out.append("</section>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
