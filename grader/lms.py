"""What a batch hands the instructor and the LMS besides the gradebook.

* each student's report (``reports/<student>.json`` and ``.txt``) with the
  manual scores, the instructor's comments and the late penalty merged in;
* ``canvas_import.csv``: Canvas's gradebook import;
* ``review/<item>.html`` and ``review/<item>.csv``: every answer to a manually
  graded item, to read and score; the CSV is what ``--manual`` takes back;
* ``feedback.zip``: one plain-text feedback file per student, for upload as
  comments.

Numbers are written as the report shows them (``fmt``: one decimal at most).
"""

from __future__ import annotations

import csv
import html
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .files import atomic_path, write_atomic
from .ledger import Manual, manual_items
from .outcome import ItemStatus, ProbeOutput, RowStatus
from .report import Report, clean, clean_line, to_dict, to_text
from .rubric import Rubric

__all__ = ["CANVAS_FIXED", "answer_text", "canvas_csv", "fmt", "student_report",
           "text_cell", "write_feedback_zip", "write_review"]

CANVAS_FIXED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MAX_ANSWER = 20_000
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def fmt(x: float | None) -> str:
    """A score as the report shows it: at most one decimal, no trailing zeros."""
    if x is None:
        return ""
    text = f"{round(float(x), 1):.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def text_cell(text: object) -> str:
    """Student-controlled text as a CSV cell: one clean line that no spreadsheet runs."""
    text = clean_line(text)
    return "'" + text if text.startswith(_FORMULA) else text


def answer_text(out: ProbeOutput) -> str:
    """What a student answered to a manually graded item, as text to read."""
    if not out.ok:
        return f"(no answer: {clean_line(out.message)[:300]})"
    if "text" in out.meta:
        return clean(str(out.meta["text"]))[:MAX_ANSWER]
    return clean(json.dumps(out.meta, default=str))[:MAX_ANSWER]


def student_report(report: Report, entry: dict, manual: dict[str, Manual]) -> tuple[str, str]:
    """(JSON, text) of a student's report with the ledger merged in: manual scores replace
    automatic ones, the total is the final score, comments and the late penalty are said."""
    questions = []
    for q in report.questions:
        given = manual.get(q.id)
        if given is not None and given.points is not None:
            status = ItemStatus.PASSED if given.points >= q.max_score - 1e-9 else ItemStatus.FAILED
            q = replace(q, score=given.points, status=status,
                        feedback="graded by your instructor")
        questions.append(q)
    total = entry.get("total")
    merged = replace(report, questions=tuple(questions),
                     total=round(entry.get("raw", 0.0) if total is None else total, 6))
    data = to_dict(merged)
    comments = {item: m.comment for item, m in sorted(manual.items()) if m.comment}
    data.update(raw_total=entry.get("raw"), late_penalty=entry.get("penalty", 0.0),
                hours_late=entry.get("hours_late"), pending=list(entry.get("pending", [])),
                comments=comments)
    lines = [to_text(merged).rstrip("\n")]
    if entry.get("pending"):
        lines.append(f"Pending: {', '.join(entry['pending'])} (graded by your instructor; the "
                     "total counts the other items until then)")
    if entry.get("penalty"):
        lines.append(f"Late: {fmt(entry.get('hours_late'))} hours after the due date: "
                     f"-{fmt(entry['penalty'])} points (before the penalty: {fmt(entry.get('raw'))})")
    if comments:
        lines += ["", "Comments from your instructor"]
        lines += [f"  {item}: {clean_line(text)}" for item, text in comments.items()]
    return json.dumps(data, indent=2) + "\n", "\n".join(lines) + "\n"


def canvas_csv(rubric: Rubric, students: dict[str, dict], column: str | None = None) -> str:
    """What Canvas's gradebook import (Grades > Import) reads: ``Student, ID, SIS User ID,
    SIS Login ID, Section`` and one assignment column (``column``, else the rubric's
    assignment), a ``Points Possible`` row, then one row per student Canvas can match:
    by ``ID`` (the user id of a Canvas export's file names) or by ``SIS Login ID`` (the
    email of a Gradescope export).  An empty score (not graded, or an item still
    pending) leaves that student's grade in Canvas as it is."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CANVAS_FIXED, text_cell(column or rubric.assignment or "Assignment")])
    writer.writerow(["Points Possible", "", "", "", "", fmt(rubric.max_total)])
    rows = []
    for name, entry in students.items():
        info = entry.get("info") or {}
        user_id, login = str(info.get("canvas_user_id", "")), str(info.get("email", ""))
        if not user_id and not login:
            continue
        scored = RowStatus(entry["status"]).scored
        rows.append([text_cell(info.get("name", name)), text_cell(user_id), "",
                     "" if user_id else text_cell(login), "",
                     fmt(entry.get("total")) if scored else ""])
    writer.writerows(sorted(rows, key=lambda r: (r[0].lower(), r[1], r[3])))
    return buffer.getvalue()


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}"
        "td.answer{white-space:pre-wrap;max-width:50em}")


def write_review(folder: Path, rubric: Rubric, students: dict[str, dict],
                 manual: dict[str, dict[str, Manual]],
                 anonymous: Callable[[str], str] | None = None) -> list[Path]:
    """``<item>.html`` and ``<item>.csv`` per manually graded item: every scored student's
    answer, in a stable order (by name, or by anonymous id when ``anonymous`` is given),
    with the score and comment given so far.  The CSV is ``--manual``'s format."""
    written = []
    for item_id in manual_items(rubric):
        item = rubric.item(item_id)
        rows = []
        for name, entry in students.items():
            if not RowStatus(entry["status"]).scored:
                continue
            shown = anonymous(name) if anonymous else name
            given = manual.get(name, {}).get(item_id)
            answer = (entry.get("answers") or {}).get(item_id, "")
            rows.append((shown, answer, given))
        rows.sort(key=lambda r: r[0].lower())
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["student", "item", "points", "comment", "answer"])
        for shown, answer, given in rows:
            writer.writerow([text_cell(shown), item_id,
                             "" if given is None or given.points is None else f"{given.points:g}",
                             text_cell(given.comment if given else ""), text_cell(answer)])
        e = lambda t: html.escape(clean(t))   # noqa: E731
        page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(item_id)} review"
                f"</title><style>{_CSS}</style></head><body><h1>{e(item_id)} {e(item.title)}: "
                f"{len(rows)} answers to grade (out of {item.points:g})</h1>"
                f"<p>{e(item.expects)}</p><p>Fill in <code>{e(item_id)}.csv</code> (the same "
                "rows) and merge it with <code>--manual</code>.</p><table><tr><th>student</th>"
                "<th>answer</th><th>points</th><th>comment</th></tr>"]
        for shown, answer, given in rows:
            points = "" if given is None or given.points is None else f"{given.points:g}"
            page.append(f"<tr><td>{e(shown)}</td><td class='answer'>{e(answer)}</td>"
                        f"<td><input type='number' min='0' max='{item.points:g}' step='any' "
                        f"value='{e(points)}' name='{e(shown)}'></td><td><textarea "
                        f"name='{e(shown)}'>{e(given.comment if given else '')}</textarea></td></tr>")
        page.append("</table></body></html>\n")
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{item_id}.csv", buffer.getvalue())
        write_atomic(folder / f"{item_id}.html", "\n".join(page))
        written += [folder / f"{item_id}.csv", folder / f"{item_id}.html"]
    return written


def write_feedback_zip(path: Path, reports: Path, students: dict[str, dict]) -> None:
    """``feedback.zip``: ``<student>.txt`` for every row, the text of its report."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(students):
            try:
                text = (reports / f"{name}.txt").read_bytes()
            except OSError:
                continue
            zf.writestr(f"{name}.txt", text)
