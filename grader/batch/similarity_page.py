"""The similarity section of summary.html: the pairs worth a look, their code side by side.

The passages two files share are found again here, for the pairs shown only,
with copydetect's own fingerprints and overlap (one process, so its salted
hashes agree), and highlighted in each file's text.  Every piece of a
student's text is cleaned and escaped on its own, so that no highlight can be
broken open by what it holds.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np

from ..report import clean
from .fingerprints import K, read_code

__all__ = ["html_section", "SHOWN"]

SHOWN = 20          # pairs shown with their code


def _boilerplate(given: list[Path]) -> np.ndarray | None:
    from copydetect import CodeFingerprint

    parts = [CodeFingerprint(str(p), K, 1).hashes for p in given if p.is_file()]
    return np.array(sorted(set().union(*parts))) if parts else None


def _slices(code_a: str, code_b: str, boilerplate: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the two texts holds the passages they share (starts, ends)."""
    from copydetect import CodeFingerprint, compare_files

    a = CodeFingerprint("a.py", K, 1, boilerplate=boilerplate, fp=io.StringIO(code_a))
    b = CodeFingerprint("b.py", K, 1, boilerplate=boilerplate, fp=io.StringIO(code_b))
    _, _, (slices_a, slices_b) = compare_files(a, b)
    return slices_a, slices_b


def _highlighted(code: str, slices: np.ndarray) -> str:
    """``code`` as escaped HTML, the shared passages in ``<mark>``."""
    spans = sorted(zip(*(s.tolist() for s in slices))) if len(slices) and len(slices[0]) else []
    parts, at = [], 0
    for start, end in spans:
        start, end = max(int(start), at), min(int(end), len(code))
        if start >= end:
            continue
        parts.append(html.escape(clean(code[at:start])))
        parts.append("<mark>" + html.escape(clean(code[start:end])) + "</mark>")
        at = end
    parts.append(html.escape(clean(code[at:])))
    return "".join(parts)


def html_section(out: Path, pairs: list, threshold: float, not_compared: dict[str, str],
                 flags: dict[str, list[str]], given: list[Path]) -> str:
    """The section: flagged pairs (``similarity.Pair``, code side by side, evidence in
    words), students whose code was not compared, and the integrity flags the grading raised."""
    e = lambda text: html.escape(clean(text))  # noqa: E731
    flagged = [p for p in pairs if p.score >= threshold]
    parts = ["<h2 id='similarity'>Similarity</h2>",
             "<p>Pairs of submissions whose code or behaviour is more alike than the class's "
             "usual, for a human to look at: advice, never a score. Code is compared without "
             "the starter's and the reference's code, after names, strings, comments and "
             "spacing are set aside; behaviour counts only shared failures, weighted by how "
             f"few students share them. Every pair is in <code>integrity.csv</code>; the "
             f"{min(len(flagged), SHOWN)} of {len(flagged)} at or over {threshold:g} are "
             "shown here.</p>"]
    if not flagged:
        parts.append(f"<p>No pair at or over {threshold:g}.</p>")
    boilerplate = _boilerplate(given) if flagged else None
    for pair in flagged[:SHOWN]:
        code_a = read_code(out / "submissions" / f"{pair.a}.py") or ""
        code_b = read_code(out / "submissions" / f"{pair.b}.py") or ""
        slices_a, slices_b = _slices(code_a, code_b, boilerplate)
        parts.append(f"<h3>{e(pair.a)} and {e(pair.b)}: {pair.score:.2f} "
                     f"(code {pair.code:.2f}, behaviour {pair.behaviour:.2f})</h3><ul>"
                     + "".join(f"<li>{e(x)}</li>" for x in pair.evidence) + "</ul>"
                     "<table class='code'><tr>"
                     f"<th>{e(pair.a)}</th><th>{e(pair.b)}</th></tr><tr>"
                     f"<td><pre>{_highlighted(code_a, slices_a)}</pre></td>"
                     f"<td><pre>{_highlighted(code_b, slices_b)}</pre></td></tr></table>")
    if not_compared:
        parts.append("<p>Code not compared (behaviour still is): "
                     + "; ".join(f"{e(s)}: {e(why)}" for s, why in sorted(not_compared.items()))
                     + ".</p>")
    if flags:
        parts.append("<h3>Integrity flags</h3><p>Submissions whose code reaches into the "
                     "grader, for a human to review (a flag, never a score):</p><ul>"
                     + "".join(f"<li>{e(s)}: {e('; '.join(f))}</li>"
                               for s, f in sorted(flags.items())) + "</ul>")
    return "\n".join(parts)
