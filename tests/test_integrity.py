"""grader/integrity.py: the static scan's flags, its bounds, and the flags in a report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from grader import integrity
from grader.outcome import Flag, FlagKind, ProbeOutput
from grader.report import Report, to_dict, to_text

ROOT = Path(__file__).resolve().parent.parent


def kinds(source: str) -> dict[str, str]:
    return {f.kind.value: f.detail for f in integrity.scan(source)}


@pytest.mark.parametrize("path", ["reference/tensorflow_tutorial.py", "starter/tensorflow_tutorial.py",
                                  "tests/corpus/alt_style_correct.py"])
def test_honest_files_are_not_flagged(path):
    assert integrity.scan((ROOT / path).read_text()) == []


@pytest.mark.parametrize("source, kind, detail", [
    ("import sys as _s\nrunner = _s.modules['__main__']\n", "introspection", "_s.modules (line 2)"),
    ("import sys\nframe = sys._getframe(1)\n", "introspection", "sys._getframe (line 2)"),
    ("def f():\n    raise E\n\ntry:\n    f()\nexcept E as e:\n    g = e.__traceback__.tb_frame\n",
     "introspection", ".tb_frame (line 7)"),
    ("import gc\n", "introspection", "import gc (line 1)"),
    ("from inspect import currentframe\n", "introspection", "import inspect (line 1)"),
    ("import ctypes.util\n", "native-code", "import ctypes (line 1)"),
    ("text = open('/proc/self/maps').read()\n", "proc", "'/proc' (line 1)"),
    ("import signal\n", "signals", "import signal (line 1)"),
    ("import os\nos.kill(os.getppid(), 9)\n", "signals", "os.kill (line 2)"),
    ("import os\nif os.fork() == 0:\n    pass\n", "processes", "os.fork (line 2)"),
    ("from os import fork\n", "processes", "import fork (line 1)"),
    ("import subprocess as sp\n", "processes", "import subprocess (line 1)"),
    ("from multiprocessing import Pool\n", "processes", "import multiprocessing (line 1)"),
    ("import grader.inside.probes\n", "grader", "import grader (line 1)"),
    ("import __main__\n__main__.PROBES['train'] = None\n", "grader", "PROBES (line 2)"),
])
def test_what_reaches_into_the_grader_or_the_system_is_flagged(source, kind, detail):
    found = kinds(source)
    assert kind in found, found
    assert detail in found[kind], found


def test_words_in_comments_and_names_of_ones_own_are_not_flagged():
    source = ("# we could os.fork() here, or import subprocess\n"
              "forked = 1\nsignals = [1]\ndef kill_switch():\n    return 'fork'\n")
    assert integrity.scan(source) == []


def test_each_kind_is_one_flag_listing_a_few_places():
    source = "import os\n" + "".join(f"os.fork()\nos.system('x{i}')\n" for i in range(20))
    flags = integrity.scan(source)
    assert [f.kind for f in flags] == [FlagKind.PROCESSES]
    assert flags[0].detail.count("line") == 3


@pytest.mark.parametrize("source", [
    "x = " + "+".join(["1"] * 300_000),          # what makes compile() recurse
    "x = " + "-" * 500_000 + "1",
    "y = [" + ",".join(["1"] * 300_000) + "]",
    "z = " + "(" * 200_000 + ")" * 200_000,
    "\n" * 1_500_000,
])
def test_the_scan_is_bounded_whatever_the_source(source):
    started = time.process_time()
    flags = integrity.scan(source)
    assert time.process_time() - started < 60   # a hang bound, not a speed test
    assert all(f.kind is FlagKind.UNSCANNED for f in flags)


def test_a_source_over_the_cap_is_not_read_and_says_so(tmp_path):
    path = tmp_path / "big.py"
    path.write_bytes(b"import subprocess\n" + b"#" * (integrity.MAX_SOURCE_BYTES + 10))
    assert [f.kind for f in integrity.scan_file(path)] == [FlagKind.UNSCANNED]
    assert [f.kind for f in integrity.scan_file(tmp_path / "missing.py")] == [FlagKind.UNSCANNED]


def test_a_syntax_error_still_flags_what_came_before_it():
    assert "processes" in kinds("import subprocess\ndef broken(:\n    pass\n'''\n")


def test_probes_a_child_found_replaced_are_one_flag():
    got = {"Q2-public": ProbeOutput("ok", meta={"tampered": ["create_placeholders", "train"]}),
           "Q9-public": ProbeOutput("ok", meta={"tampered": ["train", "not a name!", 7]}),
           "Q4-public": ProbeOutput("ok", meta={"tampered": "train"}),
           "Q5-public": ProbeOutput.failure("error", "boom")}
    flags = integrity.behaviour_flags(got)
    assert [f.kind for f in flags] == [FlagKind.TAMPERING]
    assert "create_placeholders (by Q2-public)" in flags[0].detail
    assert "train (by Q2-public)" in flags[0].detail and "not a name" not in flags[0].detail
    assert integrity.behaviour_flags({"Q2-public": ProbeOutput("ok")}) == []


def _report(flags=()) -> Report:
    return Report(submission="s.py", total=0.0, max_total=0.0, questions=(), isolation="full",
                  checks_run="all", full_total=0.0, grader_version="1", rubric_digest="x",
                  flags=tuple(flags))


def test_flags_are_in_the_json_and_one_line_of_the_text_report():
    flag = Flag(FlagKind.PROCESSES, "import subprocess (line 3)\x1b[31m\u202e")
    data = to_dict(_report([flag]))
    assert [f["kind"] for f in data["flags"]] == ["processes"]
    assert data["flags"][0]["detail"].startswith("import subprocess (line 3)")
    assert "\x1b" not in str(data["flags"]) and "\u202e" not in str(data["flags"])
    text = to_text(_report([flag]))
    lines = [line for line in text.splitlines() if "review" in line]
    assert len(lines) == 1 and "no effect on the score" in lines[0] and "processes" in lines[0]
    assert "review" not in to_text(_report()) and to_dict(_report())["flags"] == []


def test_the_scan_on_a_thread_gives_what_the_scan_gives(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("import subprocess\nimport os\nos.fork()\n")
    result = integrity.start_scan(path)
    path.unlink()  # read at once: the grade may remove the file before the scan ends
    assert result() == integrity.scan("import subprocess\nimport os\nos.fork()\n")
    assert [f.kind for f in integrity.start_scan(tmp_path / "gone.py")()] == [FlagKind.UNSCANNED]


def test_code_in_a_long_string_is_scanned_in_linear_time():
    """Bounded repeats in the string patterns: a 2 MiB string of word characters (quadratic
    for an unbounded ``\\w+\\s*\\.``) ends; the bound only tells a hang from an answer."""
    import threading
    done = []
    worker = threading.Thread(target=lambda: done.append(
        integrity.scan('x = "' + "a" * (integrity.MAX_SOURCE_BYTES - 16) + '"\n')), daemon=True)
    worker.start()
    worker.join(120)
    assert done == [[]]
    assert any(f.kind == "introspection" for f in integrity.scan('s = "import sys\\nm = sys.modules"\n'))
