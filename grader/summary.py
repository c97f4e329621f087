"""The class-level views of a batch: the gradebook, summary.json, a PNG and an HTML page.

Everything here is rendered from the batch's per-student state (one dict per
student: ``status``, ``scores`` by item id, ``total``, ``reason``...), so that a
resumed or interrupted batch renders exactly what it holds.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from urllib.parse import quote

from .files import write_atomic
from .outcome import RowStatus
from .report import clean, clean_line
from .rubric import Rubric

__all__ = ["build", "canvas_csv", "fmt", "gradebook_csv", "write_all"]

PNG_NAME = "score_distribution.png"
COMMON_MISTAKES = 5          # per question, in summary.html and summary.json
CANVAS_FIXED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def fmt(x: float | None) -> str:
    """A score as the gradebook writes it: up to 6 decimals, no trailing zeros."""
    if x is None:
        return ""
    text = f"{float(x):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _scored(entry: dict) -> bool:
    """Whether a row carries a score (its status a RowStatus, or its text as in JSON)."""
    return RowStatus(entry["status"]).scored


def _text_cell(text: object) -> str:
    """Student-controlled text as a CSV cell: one clean line that no spreadsheet runs."""
    text = clean_line(text)
    return "'" + text if text.startswith(_FORMULA) else text


def gradebook_csv(item_ids: list[str], students: dict[str, dict]) -> str:
    """``student,user_id,late,source,<item ids>,total,status``: one row per student.

    ``user_id``: the Canvas user id, or Gradescope's submitter id (else email);
    empty for plain files.  ``late``: true/false from the export.  ``source``: the
    file graded, relative to SRC.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "user_id", "late", "source", *item_ids, "total", "status"])
    for name in sorted(students):
        entry = students[name]
        info = entry.get("info") or {}
        scores = entry.get("scores") or {}
        scored = _scored(entry)
        writer.writerow([_text_cell(name), _text_cell(info.get("user_id", "")),
                         "true" if info.get("late") else "false",
                         _text_cell(entry.get("source", "")),
                         *(fmt(scores.get(i)) if scored else "" for i in item_ids),
                         fmt(entry.get("total")) if scored else "", entry.get("status", "")])
    return buffer.getvalue()


def canvas_csv(rubric: Rubric, students: dict[str, dict]) -> str:
    """What Canvas's gradebook import (Grades > Import) reads: ``Student, ID, SIS User ID,
    SIS Login ID, Section`` and one assignment column named as the rubric's assignment,
    a ``Points Possible`` row, then one row per student with a Canvas user id.

    Canvas matches rows by ``ID`` (the user id of the export's file names); an
    empty score (not graded) leaves that student's grade as it is.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    column = _text_cell(rubric.assignment or "Assignment")
    writer.writerow([*CANVAS_FIXED, column])
    writer.writerow(["Points Possible", "", "", "", "", fmt(rubric.max_total)])
    rows = []
    for name, entry in students.items():
        info = entry.get("info") or {}
        user_id = str(info.get("canvas_user_id", ""))
        if not user_id:
            continue
        scored = _scored(entry)
        rows.append([_text_cell(info.get("name", name)), _text_cell(user_id), "", "", "",
                     fmt(entry.get("total")) if scored else ""])
    writer.writerows(sorted(rows, key=lambda r: (r[0].lower(), r[1])))
    return buffer.getvalue()


def _stats(values: list[float], max_score: float) -> dict:
    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=float)
    full = int(np.sum(a >= max_score - 1e-6)) if max_score > 0 else len(values)
    zero = int(np.sum(a <= 1e-9))
    edges = np.linspace(0.0, max_score, 11) if max_score > 0 else np.array([0.0, 1.0])
    counts, _ = np.histogram(np.clip(a, 0, max_score), bins=edges)
    return {"count": len(values), "mean": round(float(a.mean()), 4),
            "median": round(float(np.median(a)), 4), "min": round(float(a.min()), 4),
            "max": round(float(a.max()), 4), "std": round(float(a.std()), 4),
            "full_marks": full, "zero": zero, "partial": len(values) - full - zero,
            "histogram": {"edges": [round(float(e), 4) for e in edges],
                          "counts": [int(c) for c in counts]}}


def build(rubric: Rubric, students: dict[str, dict], *, layout: str, ignored: list[dict],
          source: str, complete: bool, timing: dict) -> dict:
    """summary.json: counts by status, statistics per item, what was skipped and why."""
    scored = [s for s in students.values() if _scored(s)]
    counts: dict[str, int] = {}
    for entry in students.values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    items = []
    for item in rubric.items:
        values = [s["scores"][item.id] for s in scored if item.id in (s.get("scores") or {})]
        items.append({"id": item.id, "title": item.title, "max_score": item.points,
                      **_stats(values, item.points),
                      "common_mistakes": common_mistakes(item.id, students)})
    items.append({"id": "total", "title": "Total", "max_score": rubric.max_total,
                  **_stats([s["total"] for s in scored], rubric.max_total)})
    not_graded = [{"student": name, "source": s.get("source", ""), "status": s["status"],
                   "reason": s.get("reason", "")}
                  for name, s in sorted(students.items()) if not _scored(s)]
    import_errors = [{"student": name, "source": s.get("source", ""), "error": s.get("reason", "")}
                     for name, s in sorted(students.items())
                     if s["status"] == RowStatus.IMPORT_ERROR]
    return {"assignment": rubric.assignment, "source": source, "layout": layout,
            "complete": complete, "students": len(students), "scored": len(scored),
            "counts": dict(sorted(counts.items())), "items": items, "not_graded": not_graded,
            "import_errors": import_errors,
            "ignored": ignored, "timing": timing, "rubric": str(rubric.path),
            "rubric_digest": rubric.digest[:16]}


def common_mistakes(item_id: str, students: dict[str, dict],
                    limit: int = COMMON_MISTAKES) -> list[dict]:
    """The named mistakes most made on one item: ``mistake``, ``count``, ``percent`` of the
    scored students, and the ``students`` who made it; most common first."""
    scored = {n: s for n, s in students.items() if _scored(s)}
    who: dict[str, list[str]] = {}
    for name in sorted(scored):
        for mistake in dict.fromkeys((scored[name].get("mistakes") or {}).get(item_id, [])):
            who.setdefault(mistake, []).append(name)
    ranked = sorted(who.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    return [{"mistake": m, "count": len(names),
             "percent": round(100.0 * len(names) / len(scored), 1), "students": names}
            for m, names in ranked]


def write_all(out: Path, report: dict, students: dict[str, dict], rubric: Rubric) -> None:
    """summary.json, the PNG and summary.html in ``out``."""
    png = out / PNG_NAME
    try:
        write_atomic(png, render_png(report))
        report["picture"] = PNG_NAME
    except ImportError:  # matplotlib missing: the rest still helps
        report["picture"] = None
    write_atomic(out / "summary.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "summary.html", render_html(report, students, rubric))


def render_png(report: dict) -> bytes:
    """Per item: the share of students with full, partial and no marks; then the totals."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    items = [i for i in report["items"] if i["id"] != "total"]
    total = next(i for i in report["items"] if i["id"] == "total")
    fig = Figure(figsize=(10, 4.2 + 0.28 * len(items)), dpi=100)
    ax, hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    labels = [i["id"] for i in items][::-1]
    rows = items[::-1]
    left = np.zeros(len(rows))
    for key, colour, name in (("full_marks", "#2e7d32", "full marks"),
                              ("partial", "#f9a825", "partial"), ("zero", "#c62828", "zero")):
        share = np.array([100.0 * r.get(key, 0) / r["count"] if r.get("count") else 0.0
                          for r in rows])
        ax.barh(labels, share, left=left, color=colour, label=name)
        left += share
    for y, r in enumerate(rows):
        if r.get("count"):
            ax.text(101, y, f"mean {r['mean']:.3g}/{r['max_score']:g}", va="center", fontsize=8)
    ax.set_xlim(0, 130)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("% of graded students")
    ax.legend(loc="lower center", bbox_to_anchor=(0.4, 1.0), ncol=3, fontsize=8, frameon=False)
    if total.get("count"):
        edges = total["histogram"]["edges"]
        hist.bar(edges[:-1], total["histogram"]["counts"], width=np.diff(edges), align="edge",
                 color="#1565c0", edgecolor="white")
        hist.axvline(total["mean"], color="black", linestyle="--", linewidth=1,
                     label=f"mean {total['mean']:.3g}")
        hist.legend(fontsize=8, frameon=False)
    else:
        hist.text(0.5, 0.5, "no graded submission", ha="center", va="center",
                  transform=hist.transAxes)
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist.set_xlabel(f"total (out of {total['max_score']:g})")
    hist.set_ylabel("students")
    fig.suptitle(f"{report['assignment'] or 'Assignment'}: {report['scored']} graded of "
                 f"{report['students']} students; score per item (left), totals (right)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3}td.n{text-align:right}img{max-width:100%}.warn{color:#b71c1c}
table.code td{vertical-align:top;width:50%}table.code pre{white-space:pre-wrap;font-size:80%}
mark{background:#ffe082}"""
# where batch's similarity section goes (grader/batch/similarity.py fills it in)
SIMILARITY_BEGIN, SIMILARITY_END = "<!--similarity:begin-->", "<!--similarity:end-->"
SIMILARITY_SLOT = SIMILARITY_BEGIN + SIMILARITY_END


def _e(text: object) -> str:
    """Text for the page: control characters gone, then HTML-escaped."""
    return html.escape(clean(text))


def _href(name: str) -> str:
    return html.escape(quote(name), quote=True)


def _table(intro: str, columns: dict[str, str], rows: list[dict]) -> list[str]:
    """Parts of the page: ``intro``, then a table with a header per column and, in each row,
    the values of ``rows`` under the columns' keys."""
    head = intro + "<table><tr>" + "".join(f"<th>{h}</th>" for h in columns) + "</tr>"
    return [head, *("<tr>" + "".join(f"<td>{_e(r[k])}</td>" for k in columns.values()) + "</tr>"
                    for r in rows), "</table>"]


def render_html(report: dict, students: dict[str, dict], rubric: Rubric) -> str:
    e = _e
    ids = [i.id for i in rubric.items]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report['assignment'])}"
             f" - class summary</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(report['assignment'] or 'Assignment')}: class summary</h1>",
             f"<p>{report['students']} students from <code>{e(report['source'])}</code> "
             f"({e(report['layout'])} layout): "
             + ", ".join(f"{n} {e(s)}" for s, n in report["counts"].items()) + ".</p>"]
    if not report["complete"]:
        parts.append("<p class='warn'>The batch was interrupted: rows marked pending are not "
                     "graded yet; run it again to finish.</p>")
    if report.get("picture"):
        parts.append(f"<p><img src='{e(report['picture'])}' alt='score distribution per item'></p>")
    parts.append("<h2>Per item</h2><table><tr><th>item</th><th>title</th><th>max</th>"
                 "<th>mean</th><th>median</th><th>full marks</th><th>zero</th></tr>")
    for item in report["items"]:
        cells = [f"{item.get(k, ''):g}" if isinstance(item.get(k), (int, float)) else ""
                 for k in ("max_score", "mean", "median", "full_marks", "zero")]
        parts.append(f"<tr><td>{e(item['id'])}</td><td>{e(item['title'])}</td>"
                     + "".join(f"<td class='n'>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    mistaken = [i for i in report["items"] if i.get("common_mistakes")]
    if mistaken:
        parts.append("<h2>Common mistakes</h2><p>The named mistakes most made on each question "
                     f"(at most {COMMON_MISTAKES}), as a share of the {report['scored']} "
                     "scored students.</p>")
        for item in mistaken:
            parts.append(f"<h3>{e(item['id'])} {e(item['title'])}</h3><table><tr><th>mistake"
                         "</th><th>students</th><th>%</th><th>who</th></tr>")
            for m in item["common_mistakes"]:
                parts.append(f"<tr><td>{e(m['mistake'])}</td><td class='n'>{m['count']}</td>"
                             f"<td class='n'>{m['percent']:g}%</td>"
                             f"<td>{e(', '.join(m['students']))}</td></tr>")
            parts.append("</table>")
    parts.append(SIMILARITY_SLOT)
    parts.append("<h2>Gradebook</h2><table><tr><th>student</th>"
                 + "".join(f"<th>{e(i)}</th>" for i in ids)
                 + "<th>total</th><th>status</th><th>feedback</th></tr>")
    for name in sorted(students):
        s = students[name]
        scored = _scored(s)
        scores = s.get("scores") or {}
        parts.append(f"<tr><td>{e(name)}</td>"
                     + "".join(f"<td class='n'>{fmt(scores.get(i)) if scored else ''}</td>"
                               for i in ids)
                     + f"<td class='n'>{fmt(s.get('total')) if scored else ''}</td>"
                     f"<td>{e(s['status'])}</td><td><a href='reports/{_href(name)}.txt'>text</a>"
                     + (f" <a href='reports/{_href(name)}.json'>json</a>" if scored else "")
                     + "</td></tr>")
    parts.append("</table>")
    if report.get("import_errors"):
        parts += _table("<h2>Files that do not import</h2><p>Every item scores 0.</p>",
                        {"student": "student", "source": "source", "error": "error"},
                        report["import_errors"])
    if report["not_graded"]:
        parts += _table("<h2>Not graded</h2>", {"student": "student", "source": "source",
                                                "status": "status", "why": "reason"},
                        report["not_graded"])
    if report["ignored"]:
        parts.append("<h2>Ignored files</h2><ul>"
                     + "".join(f"<li><code>{e(i['path'])}</code>: {e(i['reason'])}</li>"
                               for i in report["ignored"]) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
