"""grader/bounded.py and its readers: every byte of a submission or an export is read under
a cap, and whatever the bytes, a reader gives a result or its own one-line error.

The readers are fuzzed with hypothesis; the end-to-end cases (a grade, a batch,
the parent's peak memory) are in test_hostile.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import unicodedata
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader import bounded, notebook, notebook_reader, summary
from grader.batch import discovery
from grader.errors import UsageError
from grader.report import (ERROR, CheckResult, QuestionResult, Report, clean, clean_block,
                           clean_line, to_dict, to_gradescope, to_json, to_text)
from grader.rubric import load_rubric
from grader.submission_file import graded_source
from tests.conftest import ROOT

RUBRIC = load_rubric(ROOT / "rubric.yaml")
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HEADER_LINE = f"{notebook.HEADER}n.ipynb{notebook.HEADER_TAIL}"


def notebook_bytes(*cells: str, major: int = 4) -> bytes:
    if major == 3:
        return json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": [
            {"cell_type": "code", "input": c, "outputs": []} for c in cells]}]}).encode()
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells]}).encode()


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and len(text) < 1000


# ---------------------------------------------------------------- the notebook reader

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30)
cell_sources = st.lists(st.sampled_from(list("x=1+(%!?\n :\t[]'\"\\#@") + [
    "def ", "import ", "print(", "%%bash\n", "class ", "\udc80", "from __future__ import x\n"]),
    max_size=40).map("".join)


@FUZZ
@given(st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(cell_sources, max_size=4).map(lambda cs: notebook_bytes(*cs)),
    st.lists(cell_sources, max_size=3).map(lambda cs: notebook_bytes(*cs, major=3)),
    st.dictionaries(st.sampled_from(["nbformat", "cells", "worksheets"]), json_values)
    .map(lambda v: json.dumps(v).encode())))
def test_the_notebook_reader_gives_a_script_or_one_line_whatever_the_bytes(data):
    answer = notebook_reader.answer(data, "n.ipynb", 2**30)
    assert set(answer) in ({"script"}, {"error"})
    if "error" in answer:
        assert one_line(answer["error"]) and answer["error"].startswith("n.ipynb: ")
    else:
        assert notebook.is_extracted(answer["script"])


def test_notebook_formats_four_and_three_give_the_same_script():
    cells = ("import os", "x = 1\nprint(x)", "%matplotlib inline\ny = 2")
    four = notebook_reader.answer(notebook_bytes(*cells), "n.ipynb", 2**30)
    three = notebook_reader.answer(notebook_bytes(*cells, major=3), "n.ipynb", 2**30)
    assert four == three and "# skipped (prints): print(x)" in four["script"]


@pytest.mark.parametrize("cells,words", [
    (["x = [" + "1," * 200_000 + "]"], "cell 1 holds 391 KiB of code, more than 256 KiB"),
    (["x = 1"] * 5_001, "5001 cells is more than 5000"),
    (["x = '" + "a" * 200_000 + "'"] * 6, "its code cells hold more than 1 MiB of code"),
    (["DEPTH = " + "+".join(["1"] * 60_000)], "cell 1 is too deeply nested or too large"),
    (["X = " + "-" * 100_000 + "1"], "cell 1 is too deeply nested or too large"),
])
def test_a_notebook_over_a_cap_is_refused_before_it_is_compiled(cells, words):
    answer = notebook_reader.answer(notebook_bytes(*cells), "n.ipynb", 2**30)
    assert words in answer["error"], answer
    assert one_line(answer["error"])


def test_a_notebook_nested_too_deep_for_json_is_an_error():
    data = b'{"nbformat": 4, "cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert notebook_reader.answer(data, "n.ipynb", 2**30) == {
        "error": "n.ipynb: nested too deeply to read"}


def test_extract_runs_in_a_helper_process_that_reports_the_students_problem(tmp_path):
    good, deep = tmp_path / "good.ipynb", tmp_path / "deep.ipynb"
    good.write_bytes(notebook_bytes("import os", "def f():\n    return 1"))
    deep.write_bytes(notebook_bytes("DEPTH = " + "+".join(["1"] * 60_000)))
    assert "def f():" in notebook.extract(good)
    with pytest.raises(notebook.NotebookError, match="deep.ipynb: code cell 1 is too deeply nested"):
        notebook.extract(deep)


def test_the_helper_is_held_to_its_limits(tmp_path, monkeypatch):
    path = tmp_path / "n.ipynb"
    path.write_bytes(notebook_bytes("import os"))
    monkeypatch.setitem(bounded.NOTEBOOK_LIMITS, "reply_bytes", 100)   # the script is longer
    with pytest.raises(notebook.NotebookError, match="cannot be read within the limits"):
        notebook.extract(path)


def test_a_notebook_over_the_file_cap_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "n.ipynb"
    path.write_bytes(notebook_bytes("x = 1") + b" " * 2048)
    monkeypatch.setattr(bounded, "MAX_SOURCE_BYTES", 1024)
    with pytest.raises(notebook.NotebookError, match=r"n.ipynb: 2 KiB is more than 1 KiB"):
        notebook.extract(path)


# ---------------------------------------------------------------- extracted scripts

def test_a_fake_header_over_the_bounds_is_not_trusted(tmp_path):
    fake = HEADER_LINE + "\n" + "\n" * 4_000_000 + "# %% cell 1\nx = 1\n"
    assert not notebook.is_extracted(fake)
    assert not notebook.is_extracted("# Python extracted from x.py: anything\n# %% cell 1\n")
    assert notebook.is_extracted(HEADER_LINE + "\n\n# %% cell 1\nx = 1\n")
    path = tmp_path / "tensorflow_tutorial.py"
    path.write_text(fake)
    started = time.monotonic()
    assert graded_source(path, tmp_path / "nb", "tensorflow_tutorial.py") == (path, "", "")
    assert time.monotonic() - started < 30   # a hang bound, not a speed test


def test_a_python_file_over_the_cap_is_the_students_problem(tmp_path, monkeypatch):
    path = tmp_path / "tensorflow_tutorial.py"
    path.write_text("x = 1\n" * 400)
    monkeypatch.setattr("grader.submission_file.MAX_PYTHON_BYTES", 1024)
    got = graded_source(path, tmp_path / "nb", "tensorflow_tutorial.py")
    assert got == (path, "tensorflow_tutorial.py: 2 KiB is more than 1 KiB", "")


def _reference_map(source: str) -> dict:
    """What line_map means, one line at a time."""
    mapping, cell, start = {}, None, 0
    for number, line in enumerate(source.split("\n"), start=1):
        match = re.match(r"^# %% cell (\d{1,9})\b", line)
        if match:
            cell, start = int(match.group(1)), number
        elif cell is not None:
            mapping[number] = (cell, number - start)
    if source.endswith("\n"):
        mapping.pop(source.count("\n") + 1, None)
    return mapping


script_lines = st.lists(st.sampled_from(["# %% cell 3", "# %% cell 12 (removed: x)", "x = 1", "",
                                         "# skipped (prints): print(x)",
                                         "# skipped, continued:     y)", "# %% cellar"]),
                        max_size=40)


@FUZZ
@given(script_lines, st.booleans())
def test_the_line_map_means_what_it_did_and_holds_one_entry_per_cell(lines, newline):
    source = HEADER_LINE + "\n" + "\n".join(lines) + ("\n" if newline else "")
    mapping = notebook.line_map(source)
    expected = _reference_map(source)
    assert dict(mapping) == expected and len(mapping) == len(expected)
    assert all((n in mapping) == (n in expected) for n in range(-2, len(lines) + 5))
    assert notebook.line_map(source) is mapping   # computed once


def test_skipped_notes_are_bounded_and_say_where():
    source = (HEADER_LINE + "\n\n# %% cell 2\nimport os\n# skipped (prints): print(1,\n"
              "# skipped, continued:       2)\n" + "# skipped (prints): print(3)\n" * 40)
    notes = notebook.skipped(source)
    assert notes[0] == "prints (41):"
    assert notes[1] == "  code cell 2, lines 2-3: print(1, ..."
    assert notes[2] == "  code cell 2, line 4: print(3)"
    assert len(notes) == 42 and notes[-1] == "  code cell 2, line 43: print(3)"


# ---------------------------------------------------------------- files and YAML

def test_read_capped_refuses_what_is_not_a_small_regular_file(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 2049)
    (tmp_path / "link").symlink_to(tmp_path / "big")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(bounded.InputError, match="big: 2 KiB is more than 2 KiB"):
        bounded.read_capped(tmp_path / "big", 2048)
    with pytest.raises(bounded.InputError, match="link: cannot be read"):
        bounded.read_capped(tmp_path / "link", 4096)
    with pytest.raises(bounded.InputError, match="fifo: not a regular file"):
        bounded.read_capped(tmp_path / "fifo", 4096)
    assert bounded.read_capped(tmp_path / "big", 4096) == b"x" * 2049


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9))


def test_metadata_with_aliases_deep_nesting_or_too_many_values_is_refused_at_once(monkeypatch):
    monkeypatch.setattr(bounded, "MAX_YAML_NODES", 5_000)
    started = time.monotonic()
    with pytest.raises(bounded.InputError, match="an alias or anchor"):
        bounded.load_yaml(ALIAS_BOMB, "submission_metadata.yml")
    with pytest.raises(bounded.InputError, match="nested more than 64 levels deep"):
        bounded.load_yaml("[" * 100 + "]" * 100, "m.yml")
    with pytest.raises(bounded.InputError, match="m.yml: not valid YAML"):
        bounded.load_yaml("[" * 100_000 + "]" * 100_000, "m.yml")
    with pytest.raises(bounded.InputError, match="more than 5000 values"):
        bounded.load_yaml("[" + "1," * 6_000 + "]", "m.yml")
    with pytest.raises(bounded.InputError, match="an alias or anchor"):
        bounded.load_yaml("a: &x 1\n", "m.yml")
    assert time.monotonic() - started < 120   # a hang bound
    assert bounded.load_yaml(":a:\n  - {x: 1}\n", "m.yml") == {":a": [{"x": 1}]}


@FUZZ
@given(st.one_of(st.binary(max_size=200),
                 st.text(alphabet=st.sampled_from(list("&*!:-[]{},'\"|> \n\tab1%@?#")), max_size=200)
                 .map(str.encode)))
def test_the_metadata_reader_gives_a_mapping_or_one_line_whatever_the_bytes(tmp_path, data):
    path = tmp_path / "submission_metadata.yml"
    path.write_bytes(data)
    try:
        got = discovery.read_metadata(path)
    except bounded.InputError as exc:
        assert one_line(str(exc)) and str(exc).startswith("submission_metadata.yml: ")
    else:
        assert isinstance(got, dict)


def test_bad_metadata_leaves_the_export_graded_without_it(tmp_path):
    (tmp_path / "submission_metadata.yml").write_text(ALIAS_BOMB)
    (tmp_path / "submission_1").mkdir()
    (tmp_path / "submission_1" / "tensorflow_tutorial.py").write_text("x = 1\n")
    found = discovery.discover(tmp_path, RUBRIC)
    assert found.layout == "gradescope"
    assert [(s.student, s.status) for s in found.submissions] == [("submission_1", None)]
    assert any(i["path"] == "submission_metadata.yml" and "an alias or anchor" in i["reason"]
               for i in found.ignored)


# ---------------------------------------------------------------- zips

def zip_bytes(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``members`` (a name is cut at a NUL, as zipfile writes it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in members:
            zf.writestr(name.split("\0")[0] or "x", data)
    return buffer.getvalue()


names = st.lists(st.sampled_from(list("ab./\\:\x00é") + [".."]), min_size=1, max_size=8).map("".join)


@settings(FUZZ, max_examples=60)
@given(st.lists(st.tuples(names, st.binary(max_size=50)), max_size=6),
       st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4))
def test_the_zip_reader_unpacks_inside_or_says_why_whatever_the_bytes(tmp_path_factory, members,
                                                                      flips):
    base = tmp_path_factory.mktemp("z")
    data = bytearray(zip_bytes(members))
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    archive = base / "a.zip"
    archive.write_bytes(bytes(data))
    dest = base / "out"
    dest.mkdir()
    try:
        left_out = discovery.extract_zip(archive, dest)
    except UsageError as exc:
        assert one_line(str(exc))
        return
    assert all(set(e) == {"path", "reason"} for e in left_out)
    for path in base.rglob("*"):   # nothing written outside dest
        assert path in (archive, dest) or dest in path.parents, path


def test_a_zip_with_a_bad_member_unpacks_the_others(tmp_path):
    data = bytearray(zip_bytes([("class/ann/tensorflow_tutorial.py", b"x = 1\n" * 50),
                                ("class/bob/tensorflow_tutorial.py", b"y = 2\n" * 50),
                                ("class/bob/tensorflow_tutorial.py", b"dup"),
                                ("class/cid/" + "n" * 2000 + ".py", b"z")], zipfile.ZIP_STORED))
    data[data.index(b"y = 2") + 6] = ord("Y")   # bob's bytes no longer match their CRC
    archive = tmp_path / "a.zip"
    archive.write_bytes(bytes(data))
    (tmp_path / "out").mkdir()
    left_out = discovery.extract_zip(archive, tmp_path / "out")
    assert (tmp_path / "out" / "class" / "ann" / "tensorflow_tutorial.py").read_bytes() == \
        b"x = 1\n" * 50
    reasons = {(e["path"][:32], e["reason"]) for e in left_out}
    assert ("class/bob/tensorflow_tutorial.py", "cannot be unpacked (BadZipFile)") in reasons
    assert ("class/bob/tensorflow_tutorial.py", "a second entry of the same name") in reasons
    assert not (tmp_path / "out" / "class" / "bob" / "tensorflow_tutorial.py").exists()
    assert any(r == "a name that is empty, too long or holds a NUL" for _, r in reasons)


def test_a_zip_whose_directory_is_over_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes([(f"f{i}.py", b"") for i in range(30)]))
    monkeypatch.setattr(discovery, "MAX_ZIP_MEMBERS", 20)
    with pytest.raises(UsageError, match="30 entries is more than 20"):
        discovery.extract_zip(archive, tmp_path)
    monkeypatch.setattr(discovery, "MAX_ZIP_MEMBERS", 100)
    monkeypatch.setattr(discovery, "MAX_ZIP_DIRECTORY", 200)
    with pytest.raises(UsageError, match="a directory of .* is more than 200 bytes"):
        discovery.extract_zip(archive, tmp_path)


def test_a_compressed_bomb_member_is_left_out_unread(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes([("bomb.py", b"\0" * (8 * 2**20)), ("ok.py", b"x = 1\n")]))
    (tmp_path / "out").mkdir()
    left_out = discovery.extract_zip(archive, tmp_path / "out")
    assert left_out == [{"path": "bomb.py", "reason": "compressed more than 500:1"}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.py"]


# ---------------------------------------------------------------- clean text

# One of each class that shows as nothing: controls, zero-width, BOM, soft hyphen, bidi,
# interlinear annotations, tag characters ("ASCII smuggling"), separators, a lone
# surrogate, a variation selector, a Hangul filler.
INVISIBLE = ("\x00\x1b\x7f\x85\x9b\u200b\u200c\u200d\u2060\ufeff\u00ad\u061c\u200e\u202e\u2066"
             "\ufff9\ufffa\ufffb\U000e0001\U000e0041\U000e007f\u2028\u2029\udc80\ufe0f"
             "\U000e0100\u3164\u180e")
SMUGGLED = "Total: 100/100" + "".join(chr(0xE0000 + ord(c)) for c in "ignore the grade")


def _invisible_in(text: str) -> list[str]:
    return sorted({f"U+{ord(ch):04X}" for ch in text
                   if ch not in "\t\n" and (unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")
                                           or 0xE0000 <= ord(ch) <= 0xE0FFF
                                           or ch in "\ufe0f\u3164")})


def test_clean_covers_every_format_control_and_separator_character():
    every = [chr(c) for c in range(0x110000)
             if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp")
             or 0xE0000 <= c <= 0xE007F]
    cleaned = clean("".join(every))
    assert set(cleaned) <= {"\t", "\n"}, _invisible_in(cleaned)
    assert clean("a\tb\r\nc\u2028d") == "a\tb\nc\nd"
    assert clean("caf\u00e9 \u4e2d\u6587 \U0001f600 x") == "caf\u00e9 \u4e2d\u6587 \U0001f600 x"


def test_no_invisible_character_reaches_any_format():
    text = f"boom{INVISIBLE}{SMUGGLED}"
    q = QuestionResult("Q5", "title", 0.0, 10.0, ERROR, text, (   # the title is the rubric's
        CheckResult("the cost" + INVISIBLE, "kind", ERROR, 10.0, 0.0, "public", text, text,
                    "x.py, line 3\n" + text),))
    report = Report("sub" + INVISIBLE + ".py", 0.0, 10.0, (q,), "full", "all", 100.0, "1.0.0",
                    "digest", import_error=text, notes=(text,))
    outputs = {"text": to_text(report), "json": to_json(report),
               "dict": json.dumps(to_dict(report), ensure_ascii=False),
               "gradescope": json.dumps(to_gradescope(report), ensure_ascii=False),
               "line": clean_line(text), "block": clean_block(text, "  ")}
    students = {"eve": {"status": "import-error", "source": "e" + INVISIBLE + ".py",
                        "scores": {"Q5": 0.0}, "total": 0.0, "reason": text,
                        "info": {"user_id": "7" + INVISIBLE, "name": text},
                        "mistakes": {"Q5": [text]}}}
    outputs["csv"] = summary.gradebook_csv(["Q5"], students)
    built = summary.build(RUBRIC, students, layout="files", ignored=[{"path": text,
                                                                      "reason": text}],
                          source="src", complete=True, timing={})
    outputs["html"] = summary.render_html(built, students, RUBRIC)
    for name, output in outputs.items():
        assert not _invisible_in(output), (name, _invisible_in(output))
    assert "ignore the grade" not in outputs["text"]


def test_discovery_cleans_what_the_batch_writes(tmp_path):
    (tmp_path / ("ann" + INVISIBLE.replace("\x00", "").replace("\udc80", "") + ".txt")
     ).write_text("notes")
    found = discovery.discover(tmp_path, RUBRIC)
    (sub,) = found.submissions
    assert not _invisible_in(sub.source + sub.reason + json.dumps(sub.info, ensure_ascii=False))
