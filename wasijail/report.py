"""`wasijail batch report RESULTS`: a batch's results as a terminal table, CSV or one HTML page.

The results file is read as everywhere else (resultsfile.py: the last line
per id wins; unreadable lines are reported and skipped). The HTML page is
self-contained: inline CSS, inline SVG histograms, a few lines of inline
script for the filter box, and a Content-Security-Policy that lets it load
nothing at all. Everything a job produced is escaped: guest output is data,
never markup.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

from .batch import OUTCOMES, ending, record_failed
from .nofollow import read_regular
from .verdict import VERDICTS

# Output shown per stream and job in the HTML page.
EXCERPT_BYTES = 2048
SLOWEST_SHOWN = 10
BINS = 20
CSV_COLUMNS = ("id", "outcome", "returncode", "verdict", "score", "why", "detail", "wall_time", "cpu_time",
               "peak_memory", "bytes_read", "bytes_written", "worker", "fingerprint")
# Colours of outcomes and verdicts, in the page and on the terminal.
COLOURS = {"exit": "#2e7d32", "pass": "#2e7d32", "fail": "#c62828", "trap": "#c62828", "timeout": "#ef6c00",
           "limit": "#ef6c00", "violation": "#6a1b9a", "crash": "#6a1b9a", "error": "#616161"}


@dataclass(frozen=True)
class Row:
    """One job's result, flattened for the table, the CSV and the page."""

    record: dict

    @property
    def id(self) -> str:
        return self.record["id"]

    def usage(self, name: str) -> float:
        value = (self.record.get("usage") or {}).get(name, 0)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    @property
    def failed(self) -> bool:
        return record_failed(self.record)

    def csv_row(self) -> list:
        usage = {name: self.usage(name) for name in ("wall_time", "cpu_time", "peak_memory", "bytes_read",
                                                     "bytes_written")}
        return [usage[c] if c in usage else _plain(self.record.get(c)) for c in CSV_COLUMNS]

    def excerpt(self, stream: str) -> str:
        """The start of the job's stdout or stderr, wherever the batch put it."""
        record = self.record
        if isinstance(record.get(stream), str):
            data = record[stream].encode()
        elif isinstance(record.get(f"{stream}_base64"), str):
            try:
                data = base64.b64decode(record[f"{stream}_base64"])
            except ValueError:
                return "(unreadable base64 in the results file)"
        elif isinstance(record.get(f"{stream}_file"), str):
            try:
                data = read_regular(record[f"{stream}_file"], limit=EXCERPT_BYTES + 1)
            except OSError as exc:
                return f"({record[f'{stream}_file']}: {exc.strerror or exc})"
        else:
            return ""
        text = data[:EXCERPT_BYTES].decode("utf-8", "replace")
        return text + ("\n... (cut)" if len(data) > EXCERPT_BYTES else "")


def _plain(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def rows_of(records: dict[str, dict]) -> list[Row]:
    return [Row(record) for record in records.values()]


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def counts(rows: list[Row]) -> tuple[Counter, Counter, list[float]]:
    outcomes = Counter(str(r.record.get("outcome", "?")) for r in rows)
    verdicts = Counter(str(r.record["verdict"]) for r in rows if "verdict" in r.record)
    scores = [float(r.record["score"]) for r in rows
              if isinstance(r.record.get("score"), (int, float)) and not isinstance(r.record.get("score"), bool)]
    return outcomes, verdicts, scores


def _ordered(counter: Counter, order: Iterable[str]) -> list[tuple[str, int]]:
    known = [(name, counter[name]) for name in order if counter.get(name)]
    return known + sorted((k, v) for k, v in counter.items() if k not in order)


# -- terminal and CSV -------------------------------------------------------------------------------------


def print_table(rows: list[Row], problems: list[str], file: IO[str] | None = None) -> None:
    """A rich table of every job, after the counts."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False)
    for problem in problems:
        console.print(f"wasijail: warning: {problem}", markup=False, style="yellow")
    outcomes, verdicts, scores = counts(rows)
    totals = Table(title=f"{len(rows)} jobs", show_header=False, box=None)
    for name, count in _ordered(outcomes, OUTCOMES):
        totals.add_row(name, str(count), style=_style(name))
    for name, count in _ordered(verdicts, VERDICTS):
        totals.add_row(f"verdict {name}", str(count), style=_style(name))
    if scores:
        totals.add_row("score", f"{sum(scores):g} total, {sum(scores) / len(scores):.3g} mean")
    totals.add_row("failed", str(sum(r.failed for r in rows)))
    console.print(totals)
    table = Table(show_lines=False)
    for header, justify in (("id", "left"), ("outcome", "left"), ("status", "right"), ("verdict", "left"),
                            ("score", "right"), ("wall", "right"), ("memory", "right"), ("why", "left")):
        table.add_column(header, justify=justify, overflow="fold")
    for row in rows:
        record = row.record
        verdict = str(record.get("verdict", ""))
        score = record.get("score")
        table.add_row(row.id, str(record.get("outcome", "?")), str(record.get("returncode", "")), verdict,
                      "" if score is None else f"{score:g}", human_seconds(row.usage("wall_time")),
                      human_size(row.usage("peak_memory")), _why(record),
                      style=_style(verdict or ("exit" if not row.failed else str(record.get("outcome")))))
    console.print(table)


def _style(name: str) -> str:
    return {"exit": "green", "pass": "green", "fail": "red", "trap": "red", "timeout": "yellow", "limit": "yellow",
            "violation": "magenta", "crash": "magenta", "error": "dim"}.get(name, "")


def _why(record: dict) -> str:
    """The reason a job ended, then why its verdict is what it is."""
    return ending(record) + (f"; {record['why']}" if record.get("why") else "")


def write_csv(rows: list[Row], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(row.csv_row())


# -- HTML ------------------------------------------------------------------------------------------------


_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 16px;
       color: #212121; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #616161; margin-bottom: 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px 14px; min-width: 190px; }
.card h3 { font-size: 13px; margin: 0 0 6px; color: #616161; font-weight: 600; }
.count { display: flex; justify-content: space-between; gap: 16px; }
.count b { font-variant-numeric: tabular-nums; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; }
figure { margin: 0; } figcaption { color: #616161; font-size: 13px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #fafafa; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.tag { border-radius: 4px; padding: 1px 6px; color: #fff; font-size: 12px; white-space: nowrap; }
pre { background: #f5f5f5; padding: 6px 8px; margin: 4px 0; white-space: pre-wrap; word-break: break-all;
      max-height: 240px; overflow: auto; font-size: 12px; }
pre.diff .add { color: #1b5e20; } pre.diff .del { color: #b71c1c; }
details summary { cursor: pointer; color: #1565c0; }
input[type=search] { font: inherit; padding: 4px 8px; width: 320px; margin-bottom: 8px; }
.none { color: #9e9e9e; }
"""

_SCRIPT = """
const box = document.getElementById('filter');
const rows = Array.from(document.querySelectorAll('#jobs tbody tr'));
const shown = document.getElementById('shown');
box.addEventListener('input', () => {
  const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let n = 0;
  for (const row of rows) {
    const hit = words.every(w => row.dataset.search.includes(w));
    row.hidden = !hit;
    if (hit) n++;
  }
  shown.textContent = String(n);
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tag(name: str, colour: str | None = None) -> str:
    if not name:
        return '<span class="none">-</span>'
    return f'<span class="tag" style="background:{colour or COLOURS.get(name, "#455a64")}">{_e(name)}</span>'


def histogram(values: list[float], label, title: str, width: int = 520, height: int = 170) -> str:
    """An inline SVG histogram of `values` in BINS bins, axis ends labelled with `label(value)`."""
    if not values:
        return f'<figure><figcaption>{_e(title)}: no data</figcaption></figure>'
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    bins = [0] * BINS
    for v in values:
        bins[min(BINS - 1, int((v - low) / span * BINS))] += 1
    top = max(bins)
    plot_h, left, bottom = height - 36, 34, height - 22
    bar_w = (width - left - 8) / BINS
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
             f' aria-label="{_e(title)}">',
             f'<line x1="{left}" y1="{bottom}" x2="{width - 8}" y2="{bottom}" stroke="#9e9e9e"/>',
             f'<text x="{left - 4}" y="{bottom - plot_h + 10}" font-size="11" text-anchor="end">{top}</text>',
             f'<text x="{left - 4}" y="{bottom}" font-size="11" text-anchor="end">0</text>']
    for i, n in enumerate(bins):
        if not n:
            continue
        h = max(1.0, n / top * plot_h)
        x = left + i * bar_w
        lo, hi = low + span * i / BINS, low + span * (i + 1) / BINS
        parts.append(f'<rect x="{x + 1:.1f}" y="{bottom - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}"'
                     f' fill="#1e88e5"><title>{_e(label(lo))} to {_e(label(hi))}: {n} jobs</title></rect>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="11">{_e(label(low))}</text>')
    parts.append(f'<text x="{width - 8}" y="{height - 6}" font-size="11" text-anchor="end">{_e(label(high))}</text>')
    parts.append("</svg>")
    return f'<figure>{"".join(parts)}<figcaption>{_e(title)}</figcaption></figure>'


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        cls = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "")
        lines.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _details(row: Row) -> str:
    record = row.record
    parts = []
    for stream in ("stdout", "stderr"):
        text = row.excerpt(stream)
        if text:
            parts.append(f"<div><b>{stream}</b><pre>{_e(text)}</pre></div>")
    diffs = record.get("diff")
    if isinstance(diffs, dict):
        for name, diff in diffs.items():
            parts.append(f"<div><b>diff of {_e(name)}</b>{_diff_html(str(diff))}</div>")
    check = record.get("check")
    if isinstance(check, dict) and check.get("output"):
        parts.append(f"<div><b>checker output</b> (status {_e(check.get('status'))})"
                     f"<pre>{_e(check['output'])}</pre></div>")
    if record.get("outcome") == "trap" and record.get("detail"):
        parts.append(f"<div><b>trap</b><pre>{_e(record['detail'])}</pre></div>")
    if not parts:
        return '<span class="none">no output</span>'
    return f"<details><summary>output</summary>{''.join(parts)}</details>"


def _job_rows(rows: list[Row], with_details: bool) -> str:
    out = []
    for row in rows:
        record = row.record
        score = record.get("score")
        why = _why(record)
        search = " ".join(str(x) for x in (row.id, record.get("outcome"), record.get("verdict", ""), why,
                                           "failed" if row.failed else "")).lower()
        outcome = str(record.get("outcome", "?"))
        # An exit with another status than 0 is not shown in the colour of success.
        colour = COLOURS["limit"] if outcome == "exit" and record.get("returncode") != 0 else None
        cells = [f"<td>{_e(row.id)}</td>", f"<td>{_tag(outcome, colour)}</td>",
                 f"<td class=num>{_e(record.get('returncode', ''))}</td>",
                 f"<td>{_tag(str(record.get('verdict', '')))}</td>",
                 f"<td class=num>{'' if score is None else _e(f'{score:g}')}</td>",
                 f"<td class=num>{_e(human_seconds(row.usage('wall_time')))}</td>",
                 f"<td class=num>{_e(human_size(row.usage('peak_memory')))}</td>",
                 f"<td>{_e(why)}</td>"]
        if with_details:
            cells.append(f"<td>{_details(row)}</td>")
        out.append(f'<tr data-search="{_e(search)}">{"".join(cells)}</tr>')
    return "\n".join(out)


_HEAD = ("<tr><th>job</th><th>outcome</th><th>status</th><th>verdict</th><th>score</th><th>wall time</th>"
         "<th>peak memory</th><th>why</th>{}</tr>")


def render_html(rows: list[Row], title: str, problems: list[str]) -> str:
    """The whole report page."""
    outcomes, verdicts, scores = counts(rows)
    failed = [r for r in rows if r.failed]
    slowest = sorted(rows, key=lambda r: r.usage("wall_time"), reverse=True)[:SLOWEST_SHOWN]

    def card(heading: str, items: list[tuple[str, int]]) -> str:
        body = "".join(f'<div class="count"><span><span class="dot" style="background:'
                       f'{COLOURS.get(name, "#455a64")}"></span>{_e(name)}</span><b>{n}</b></div>'
                       for name, n in items) or '<span class="none">none</span>'
        return f'<div class="card"><h3>{_e(heading)}</h3>{body}</div>'

    totals = [f'<div class="count"><span>jobs</span><b>{len(rows)}</b></div>',
              f'<div class="count"><span>failed</span><b>{len(failed)}</b></div>']
    if scores:
        totals.append(f'<div class="count"><span>score total</span><b>{sum(scores):g}</b></div>'
                      f'<div class="count"><span>score mean</span><b>{sum(scores) / len(scores):.3g}</b></div>')
    started = [r for r in rows if r.usage("wall_time") > 0]  # a job that never started has no usage
    walls = [r.usage("wall_time") for r in started]
    memory = [r.usage("peak_memory") for r in started]
    warnings = "".join(f"<li>{_e(p)}</li>" for p in problems)
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<div class="sub">{len(rows)} jobs, generated {_e(generated)} by <code>wasijail batch report</code>.
A job <b>failed</b> when its verdict is not <i>pass</i> or, for a job without expectations, when it did not
exit with status 0.</div>
{f'<h2>Unreadable lines in the results file</h2><ul>{warnings}</ul>' if warnings else ''}
<div class="cards">
<div class="card"><h3>Totals</h3>{''.join(totals)}</div>
{card("Outcomes (how each run ended)", _ordered(outcomes, OUTCOMES))}
{card("Verdicts (was the run correct?)", _ordered(verdicts, VERDICTS))}
</div>
<h2>Resources</h2>
<div class="charts">
{histogram(walls, human_seconds, f"Wall time per job: how many of the {len(started)} jobs that started took how long")}
{histogram(memory, human_size, f"Peak memory per job: how many of the {len(started)} jobs that started used how much")}
</div>
<h2>Failed jobs ({len(failed)})</h2>
{f'<table><thead>{_HEAD.format("")}</thead><tbody>{_job_rows(failed, False)}</tbody></table>'
 if failed else '<p class="none">No job failed.</p>'}
<h2>Slowest jobs</h2>
<table><thead>{_HEAD.format("")}</thead><tbody>{_job_rows(slowest, False)}</tbody></table>
<h2>All jobs</h2>
<input type="search" id="filter" placeholder="Filter: id, outcome, verdict, words of the reason"
 aria-label="filter jobs"> showing <span id="shown">{len(rows)}</span> of {len(rows)}
<table id="jobs"><thead>{_HEAD.format("<th>output</th>")}</thead>
<tbody>
{_job_rows(rows, True)}
</tbody></table>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_html(rows: list[Row], title: str, problems: list[str], path: Path) -> None:
    path.write_text(render_html(rows, title, problems))


def title_for(results: Path) -> str:
    return f"Batch report: {os.path.basename(results)}"
