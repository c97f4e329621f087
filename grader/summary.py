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
import re
from pathlib import Path

import numpy as np

from urllib.parse import quote

from . import lms
from .files import write_atomic
from .lms import CANVAS_FIXED, fmt
from .outcome import RowStatus
from .report import clean
from .rubric import Rubric

__all__ = ["CANVAS_FIXED", "build", "canvas_csv", "fmt", "gradebook_csv", "write_all"]

PNG_NAME = "score_distribution.png"
COMMON_MISTAKES = 5          # per question, in summary.html and summary.json
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _scored(entry: dict) -> bool:
    """Whether a row carries a score (its status a RowStatus, or its text as in JSON)."""
    return RowStatus(entry["status"]).scored


_text_cell = lms.text_cell


def _cells(values) -> str:
    return "; ".join(clean(v).replace("\n", " ") for v in values or [])


GRADEBOOK_EXTRA = ("raw", "penalty", "hours_late", "pending", "overrides", "review", "flags")


def gradebook_csv(item_ids: list[str], students: dict[str, dict]) -> str:
    """``student,user_id,late,source,<item ids>,total,status,raw,penalty,hours_late,pending,
    overrides,review,flags``: one row per student.

    ``user_id``: the Canvas user id, or Gradescope's submitter id (else email);
    empty for plain files.  ``late``: true/false from the export.  ``source``: the
    file graded, relative to SRC.  An item still pending (graded by hand) is an
    empty cell, and so is the total until it is graded.  ``raw`` is the total
    before the late penalty (``penalty`` points, ``hours_late`` after the due date
    and extension); ``overrides``: items scored by hand over an automatic score;
    ``review``: overrides whose automatic score changed since; ``flags``: what
    the grader flagged.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "user_id", "late", "source", *item_ids, "total", "status",
                     *GRADEBOOK_EXTRA])
    for name in sorted(students):
        entry = students[name]
        info = entry.get("info") or {}
        scores = entry.get("scores") or {}
        scored = _scored(entry)
        writer.writerow([_text_cell(name), _text_cell(info.get("user_id", "")),
                         "true" if info.get("late") or entry.get("hours_late") else "false",
                         _text_cell(entry.get("source", "")),
                         *(fmt(scores.get(i)) if scored else "" for i in item_ids),
                         fmt(entry.get("total")) if scored else "", entry.get("status", ""),
                         fmt(entry.get("raw")) if scored else "",
                         fmt(entry.get("penalty")) if scored and entry.get("penalty") else "",
                         fmt(entry.get("hours_late")) if entry.get("hours_late") else "",
                         " ".join(entry.get("pending") or []),
                         " ".join(entry.get("overrides") or []),
                         " ".join(entry.get("review") or []),
                         _text_cell(_cells(entry.get("flags")))])
    return buffer.getvalue()


def canvas_csv(rubric: Rubric, students: dict[str, dict], column: str | None = None) -> str:
    """Canvas's gradebook import (``lms.canvas_csv``)."""
    return lms.canvas_csv(rubric, students, column)


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


def _follow_up(students: dict[str, dict]) -> dict[str, list[str]]:
    """Who needs the instructor: late, pending items, overrides to review, flags."""
    rows = sorted(students.items())
    return {"late": [n for n, s in rows if (s.get("info") or {}).get("late") or s.get("hours_late")],
            "pending": [n for n, s in rows if _scored(s) and s.get("pending")],
            "overrides": [n for n, s in rows if s.get("overrides")],
            "review": [n for n, s in rows if s.get("review")],
            "flagged": [n for n, s in rows if s.get("flags")]}


def build(rubric: Rubric, students: dict[str, dict], *, layout: str, ignored: list[dict],
          source: str, complete: bool, timing: dict) -> dict:
    """summary.json: counts by status, statistics per item, what was skipped and why.

    ``scored`` counts the rows that carry a score (graded, import-error, timeout,
    crashed): the chart and the statistics are over those, as the header says.
    """
    scored = [s for s in students.values() if _scored(s)]
    counts: dict[str, int] = {}
    for entry in students.values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    items = []
    for item in rubric.items:
        values = [s["scores"][item.id] for s in scored
                  if (s.get("scores") or {}).get(item.id) is not None]
        items.append({"id": item.id, "title": item.title, "max_score": item.points,
                      **_stats(values, item.points),
                      "pending": sum(item.id in (s.get("pending") or []) for s in scored),
                      "unanswered": sum(item.id in (s.get("unanswered") or []) for s in scored),
                      "overrides": sum(item.id in (s.get("overrides") or []) for s in scored),
                      "common_mistakes": common_mistakes(item.id, students)})
    totals = [s["total"] for s in scored if s.get("total") is not None]
    items.append({"id": "total", "title": "Total", "max_score": rubric.max_total,
                  **_stats(totals, rubric.max_total)})
    not_graded = [{"student": name, "source": s.get("source", ""), "status": s["status"],
                   "reason": s.get("reason", "")}
                  for name, s in sorted(students.items()) if not _scored(s)]
    import_errors = [{"student": name, "source": s.get("source", ""), "error": s.get("reason", "")}
                     for name, s in sorted(students.items())
                     if s["status"] == RowStatus.IMPORT_ERROR]
    return {"assignment": rubric.assignment, "source": source, "layout": layout,
            "complete": complete, "students": len(students), "scored": len(scored),
            "counts": dict(sorted(counts.items())), "items": items, "not_graded": not_graded,
            "import_errors": import_errors, "follow_up": _follow_up(students),
            "ignored": ignored, "timing": timing, "rubric": str(rubric.path),
            "rubric_digest": rubric.digest[:16]}


def common_mistakes(item_id: str, students: dict[str, dict],
                    limit: int = COMMON_MISTAKES) -> list[dict]:
    """The named mistakes most made on one item: ``mistake``, ``count``, ``percent`` of the
    scored students, and the ``students`` who made it; most common first.

    One diagnosis is one row: its sentence may carry numbers that depend on the
    inputs ("the cost is 16x ..."), and these are set aside (shown as N when they
    differ).  An unanswered question (the starter untouched) is no mistake."""
    scored = {n: s for n, s in students.items() if _scored(s)}
    who: dict[str, list[str]] = {}
    texts: dict[str, set[str]] = {}
    for name in sorted(scored):
        if item_id in (scored[name].get("unanswered") or []):
            continue
        for mistake in dict.fromkeys((scored[name].get("mistakes") or {}).get(item_id, [])):
            key = _NUMBER.sub("N", mistake)
            if name not in who.setdefault(key, []):
                who[key].append(name)
            texts.setdefault(key, set()).add(mistake)
    ranked = sorted(who.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    return [{"mistake": next(iter(texts[m])) if len(texts[m]) == 1 else m, "count": len(names),
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
    write_atomic(out / "summary.html", render_html(report, students, rubric,
                                                   _similarity_section(out)))


def _similarity_section(out: Path) -> str:
    try:
        with open(out / SIMILARITY_SECTION, "rb") as f:
            data = f.read(_MAX_SECTION_BYTES + 1)
    except OSError:
        return ""
    return "" if len(data) > _MAX_SECTION_BYTES else data.decode("utf-8", errors="replace")


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
    ax.set_xlabel("% of scored students")
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
    fig.suptitle(f"{report['assignment'] or 'Assignment'}: {report['scored']} scored of "
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
# batch's Similarity section (grader/batch/similarity.py), kept in DIR so that a rescore
# renders it again; read back bounded, as every file of DIR is
SIMILARITY_SECTION = "integrity_section.html"
SIMILARITY_BEGIN, SIMILARITY_END = "<!--similarity:begin-->", "<!--similarity:end-->"
_MAX_SECTION_BYTES = 16 * 2**20


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


def _counts_line(report: dict) -> str:
    """The header's counts, in the chart's terms: scored rows (by status), then the rest."""
    counts = report["counts"]
    scored = [(s, n) for s, n in counts.items() if RowStatus(s).scored]
    other = [(s, n) for s, n in counts.items() if not RowStatus(s).scored]
    line = (f"<p>{report['students']} students from <code>{_e(report['source'])}</code> "
            f"({_e(report['layout'])} layout): {report['scored']} scored ("
            + ", ".join(f"{n} {_e(s)}" for s, n in scored) + ")")
    if other:
        line += (f"; {sum(n for _, n in other)} not scored ("
                 + ", ".join(f"{n} {_e(s)}" for s, n in other) + ")")
    return line + ".</p>"


def _follow_up_html(report: dict) -> list[str]:
    follow = report.get("follow_up") or {}
    labels = {"late": "late", "pending": "items pending (graded by hand)",
              "overrides": "scores overridden by hand", "review": "overrides to review (the "
              "automatic score changed since)", "flagged": "flagged"}
    rows = [(labels[k], names) for k, names in follow.items() if k in labels and names]
    if not rows:
        return []
    return (["<h2>Needs follow-up</h2><table><tr><th>what</th><th>students</th><th>who</th></tr>"]
            + [f"<tr><td>{_e(label)}</td><td class='n'>{len(names)}</td>"
               f"<td>{_e(', '.join(names))}</td></tr>" for label, names in rows] + ["</table>"])


def render_html(report: dict, students: dict[str, dict], rubric: Rubric,
                similarity: str = "") -> str:
    """The page; ``similarity``: batch's Similarity section (HTML it rendered), placed
    before the gradebook."""
    e = _e
    ids = [i.id for i in rubric.items]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report['assignment'])}"
             f" - class summary</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(report['assignment'] or 'Assignment')}: class summary</h1>",
             _counts_line(report)]
    if not report["complete"]:
        parts.append("<p class='warn'>The batch was interrupted: rows marked pending are not "
                     "graded yet; run it again to finish.</p>")
    if report.get("picture"):
        parts.append(f"<p><img src='{e(report['picture'])}' alt='score distribution per item'></p>")
    parts.append("<h2>Per item</h2><table><tr><th>item</th><th>title</th><th>max</th>"
                 "<th>mean</th><th>median</th><th>full marks</th><th>zero</th><th>unanswered</th>"
                 "<th>pending</th></tr>")
    for item in report["items"]:
        cells = [f"{item.get(k, ''):g}" if isinstance(item.get(k), (int, float)) else ""
                 for k in ("max_score", "mean", "median", "full_marks", "zero", "unanswered",
                           "pending")]
        parts.append(f"<tr><td>{e(item['id'])}</td><td>{e(item['title'])}</td>"
                     + "".join(f"<td class='n'>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    parts += _follow_up_html(report)
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
    parts.append(SIMILARITY_BEGIN + similarity + SIMILARITY_END)
    flags = any(s.get("flags") for s in students.values())
    parts.append("<h2>Gradebook</h2><table><tr><th>student</th>"
                 + "".join(f"<th>{e(i)}</th>" for i in ids)
                 + "<th>total</th><th>status</th><th>late</th><th>pending</th><th>overrides</th>"
                 + ("<th>flags</th>" if flags else "") + "<th>feedback</th></tr>")
    for name in sorted(students):
        s = students[name]
        scored = _scored(s)
        scores = s.get("scores") or {}
        late = ((f"{fmt(s['hours_late'])} h" if s.get("hours_late") else "yes")
                + (f", -{fmt(s['penalty'])}" if s.get("penalty") else "")
                if (s.get("info") or {}).get("late") or s.get("hours_late") else "")
        review = [f"{i} (review)" for i in s.get("review") or []]
        overrides = [i for i in s.get("overrides") or [] if i not in (s.get("review") or [])]
        parts.append(f"<tr><td>{e(name)}</td>"
                     + "".join(f"<td class='n'>{fmt(scores.get(i)) if scored else ''}</td>"
                               for i in ids)
                     + f"<td class='n'>{fmt(s.get('total')) if scored else ''}</td>"
                     f"<td>{e(s['status'])}</td><td>{e(late)}</td>"
                     f"<td>{e(' '.join(s.get('pending') or []))}</td>"
                     f"<td>{e(', '.join(overrides + review))}</td>"
                     + (f"<td>{e(_cells(s.get('flags')))}</td>" if flags else "")
                     + f"<td><a href='reports/{_href(name)}.txt'>text</a>"
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
