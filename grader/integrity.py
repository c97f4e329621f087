"""Integrity flags: what in a submission a human should look at, never a score.

A bounded static scan of the source, in the parent: the source is read up to
:data:`MAX_SOURCE_BYTES` and split into tokens (``tokenize``: one pass, no
parse tree, no recursion) up to :data:`MAX_TOKENS`; it never runs or
compiles anything. It flags a file that reaches into the grader (its
modules, probes or harness), into the interpreter (``sys.modules``, frames,
``gc``, ``inspect``), into native code (``ctypes``), ``/proc``, signals or
other processes (``fork``, ``subprocess``, ``multiprocessing``, ``exec``), also where
such code is written in a string literal, and code run from text (``exec``, ``eval``).
What the child reports it found changed (a probe replaced) is added by
:func:`behaviour_flags`. A correct solution may do some of these things for
reasons of its own: a flag is a question for the instructor, not an answer.
"""

from __future__ import annotations

import io
import re
import threading
import token
import tokenize
from collections.abc import Callable
from pathlib import Path

from .outcome import Flag, FlagKind, ProbeOutput

__all__ = ["MAX_SOURCE_BYTES", "MAX_TOKENS", "behaviour_flags", "scan", "scan_file", "start_scan"]

MAX_SOURCE_BYTES = 2 * 2**20
MAX_TOKENS = 50_000     # a long solution has a few thousand; a hostile file costs ~1 s of a thread
_MAX_PLACES = 3         # places listed per flag
_MAX_TAMPERED = 20      # names a child may report

# Modules whose import is flagged, by their top-level name.
_MODULES = {
    "grader": FlagKind.GRADER, "grader_inside": FlagKind.GRADER,
    "gc": FlagKind.INTROSPECTION, "inspect": FlagKind.INTROSPECTION,
    "ctypes": FlagKind.NATIVE, "_ctypes": FlagKind.NATIVE, "cffi": FlagKind.NATIVE,
    "signal": FlagKind.SIGNALS,
    "subprocess": FlagKind.PROCESSES, "multiprocessing": FlagKind.PROCESSES,
    "pty": FlagKind.PROCESSES, "_posixsubprocess": FlagKind.PROCESSES,
}
# Attributes (``x.name``) that are flagged wherever they appear.
_ATTRIBUTES = {
    "_getframe": FlagKind.INTROSPECTION, "f_back": FlagKind.INTROSPECTION,
    "f_globals": FlagKind.INTROSPECTION, "f_locals": FlagKind.INTROSPECTION,
    "f_builtins": FlagKind.INTROSPECTION, "tb_frame": FlagKind.INTROSPECTION,
    "gi_frame": FlagKind.INTROSPECTION, "cr_frame": FlagKind.INTROSPECTION,
    "get_referrers": FlagKind.INTROSPECTION, "get_objects": FlagKind.INTROSPECTION,
    "fork": FlagKind.PROCESSES, "forkpty": FlagKind.PROCESSES, "system": FlagKind.PROCESSES,
    "popen": FlagKind.PROCESSES, "posix_spawn": FlagKind.PROCESSES,
    "posix_spawnp": FlagKind.PROCESSES, "execv": FlagKind.PROCESSES,
    "execve": FlagKind.PROCESSES, "execvp": FlagKind.PROCESSES, "execl": FlagKind.PROCESSES,
    "execlp": FlagKind.PROCESSES, "spawnv": FlagKind.PROCESSES, "spawnl": FlagKind.PROCESSES,
    "kill": FlagKind.SIGNALS, "killpg": FlagKind.SIGNALS, "pidfd_send_signal": FlagKind.SIGNALS,
}
# Names flagged wherever they appear: the grader's own objects in the child.
_NAMES = {"PROBES": FlagKind.GRADER, "Harness": FlagKind.GRADER, "GraderLimit": FlagKind.GRADER,
          "grader_inside": FlagKind.GRADER}
# Text flagged inside string literals.
_STRINGS = {"/proc": FlagKind.PROC, "grader_inside": FlagKind.GRADER}
# Code inside string literals (what ``exec`` would run), by the kind it is flagged as.
_CODE_IN_STRINGS = re.compile(   # bounded repeats: a 2 MiB string costs linear time
    r"\b(?:(?P<grader>(?:import|from)\s{1,8}grader\b|PROBES|Harness)"
    r"|(?P<introspection>\w{1,64}\s{0,8}\.\s{0,8}modules\b|_getframe|f_back|f_globals"
    r"|get_referrers|(?:import|from)\s{1,8}(?:gc|inspect)\b)"
    r"|(?P<native>(?:import|from)\s{1,8}c?types\b|ctypes)"
    r"|(?P<processes>(?:import|from)\s{1,8}(?:subprocess|multiprocessing)\b|\.fork\s{0,8}\()"
    r"|(?P<signals>(?:import|from)\s{1,8}signal\b|\.kill\s{0,8}\())")
_STRING_KINDS = {"grader": FlagKind.GRADER, "introspection": FlagKind.INTROSPECTION,
                 "native": FlagKind.NATIVE, "processes": FlagKind.PROCESSES,
                 "signals": FlagKind.SIGNALS}
# Builtins that run code built from text: a way to hide the rest from this scan.
_DYNAMIC = frozenset({"exec", "eval", "compile", "__import__"})


class _Found:
    def __init__(self) -> None:
        self.places: dict[FlagKind, list[str]] = {}

    def add(self, kind: FlagKind, what: str, line: int) -> None:
        places = self.places.setdefault(kind, [])
        place = f"{what} (line {line})"
        if len(places) < _MAX_PLACES and place not in places:
            places.append(place)

    def flags(self) -> list[Flag]:
        return [Flag(kind, ", ".join(places)) for kind, places in
                sorted(self.places.items(), key=lambda kv: list(FlagKind).index(kv[0]))]


def scan(source: str | bytes) -> list[Flag]:
    """The flags of one source file (bounded: see the module's docstring)."""
    data = source.encode("utf-8", "replace") if isinstance(source, str) else source
    if len(data) > MAX_SOURCE_BYTES:
        return [Flag(FlagKind.UNSCANNED, f"the file is larger than {MAX_SOURCE_BYTES // 2**20} MiB")]
    found = _Found()
    previous: list[tokenize.TokenInfo] = []   # the last two significant tokens
    importing = False
    try:
        for count, tok in enumerate(tokenize.tokenize(io.BytesIO(data).readline)):
            if count >= MAX_TOKENS:
                found.add(FlagKind.UNSCANNED, f"scanned the first {MAX_TOKENS} tokens only",
                          tok.start[0])
                break
            if tok.type in (token.NL, token.COMMENT, token.INDENT, token.DEDENT, token.ENCODING):
                continue
            line = tok.start[0]
            if tok.type == token.NEWLINE:
                importing = False
            elif tok.type == token.NAME:
                after_dot = bool(previous) and previous[-1].string == "."
                if tok.string in ("import", "from") and not after_dot:
                    importing = True
                elif importing and not after_dot and tok.string in _MODULES:
                    found.add(_MODULES[tok.string], f"import {tok.string}", line)
                elif importing and not after_dot and tok.string in _ATTRIBUTES:
                    found.add(_ATTRIBUTES[tok.string], f"import {tok.string}", line)
                owner = previous[-2].string if len(previous) > 1 and \
                    previous[-2].type == token.NAME else ""
                if after_dot and tok.string in _ATTRIBUTES:
                    found.add(_ATTRIBUTES[tok.string], f"{owner}.{tok.string}", line)
                if after_dot and tok.string == "modules":  # sys.modules, under any alias
                    found.add(FlagKind.INTROSPECTION, f"{owner}.modules", line)
                if tok.string in _NAMES and not (importing and tok.string in _MODULES):
                    found.add(_NAMES[tok.string], tok.string, line)
                if not importing and (tok.string in _DYNAMIC and not after_dot
                                      or tok.string in ("exec", "__import__")):
                    found.add(FlagKind.DYNAMIC, tok.string, line)
            elif tok.type == token.STRING or tok.type == getattr(token, "FSTRING_MIDDLE", -1):
                for text, kind in _STRINGS.items():
                    if text in tok.string:
                        found.add(kind, repr(text), line)
                text = tok.string.replace("\\n", "\n").replace("\\t", "\t")   # escapes as code
                for match in _CODE_IN_STRINGS.finditer(text):
                    found.add(_STRING_KINDS[match.lastgroup],
                              f"{' '.join(match.group(0).split())!r} in a string", line)
            previous = (previous + [tok])[-2:]
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError, ValueError):
        pass  # what was read so far counts; the import reports the syntax error itself
    return found.flags()


def scan_file(path: Path) -> list[Flag]:
    """:func:`scan` of a file, read no further than the cap."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        return [Flag(FlagKind.UNSCANNED, f"the file could not be read: {exc.strerror}")]
    return scan(data)


def start_scan(path: Path) -> Callable[[], list[Flag]]:
    """:func:`scan_file` on a thread, started now (the file is read at once), so that it
    overlaps the grade; call the result for the flags."""
    done: list[list[Flag]] = []
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        failed = [Flag(FlagKind.UNSCANNED, f"the file could not be read: {exc.strerror}")]
        return lambda: failed

    def run() -> None:
        try:
            done.append(scan(data))
        except Exception:  # a bug of the scan must not stop a grade: it is not a score
            done.append([Flag(FlagKind.UNSCANNED, "the scan failed")])

    thread = threading.Thread(target=run, name="integrity-scan", daemon=True)
    thread.start()

    def result() -> list[Flag]:
        thread.join()
        return done[0] if done else []
    return result


def behaviour_flags(got: dict[str, ProbeOutput]) -> list[Flag]:
    """What the children reported finding changed among the grader's objects (the
    ``tampered`` list of a result: the probes replaced while that task ran)."""
    seen: dict[str, str] = {}
    for task_id, out in got.items():
        names = out.meta.get("tampered") if out.ok else None
        if not isinstance(names, list):
            continue
        for name in names[:_MAX_TAMPERED]:
            if isinstance(name, str) and name.isidentifier() and len(name) <= 64:
                seen.setdefault(name, task_id)
    if not seen:
        return []
    detail = ", ".join(f"probe {name} (by {task})" for name, task in list(seen.items())[:_MAX_PLACES])
    more = f" and {len(seen) - _MAX_PLACES} more" if len(seen) > _MAX_PLACES else ""
    return [Flag(FlagKind.TAMPERING, f"the grader's probes were replaced: {detail}{more}")]
