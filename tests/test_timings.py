"""grader/timings.py: the phase timings of a grade, written only when asked for."""

from __future__ import annotations

import json

from grader import timings
from grader.progress import Watch


class _Heard(Watch):
    def __init__(self):
        self.events = []

    def phase(self, name, budget):
        self.events.append(("phase", name))

    def result(self, task_id, output):
        self.events.append(("result", task_id))


def test_nothing_is_measured_or_written_without_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(timings.ENV, raising=False)
    inner = Watch()
    with timings.grade_timings("a.py") as measured:
        assert measured is None and timings.current() is None
        assert timings.watched(inner, "main") is inner
        with timings.measured("plan"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_grade_appends_one_line_of_spans(monkeypatch, tmp_path):
    out = tmp_path / "t.jsonl"
    monkeypatch.setenv(timings.ENV, str(out))
    for name in ("a.py", "b.py"):
        with timings.grade_timings(name):
            with timings.measured("plan"):
                pass
            with timings.measured("expected", children=True):
                timings.watched(Watch(), "main").phase("startup", 60)
            heard = _Heard()
            watch = timings.watched(heard, "main")
            watch.phase("startup", 60)
            watch.phase("import", 20)
            watch.phase("Q2-public", 5)
            watch.result("Q2-public", None)
            watch.result("Q2-public", None)  # told again (a merged result): the first end counts
        assert timings.current() is None
        assert heard.events == [("phase", "startup"), ("phase", "import"),
                                ("phase", "Q2-public"), ("result", "Q2-public"),
                                ("result", "Q2-public")]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["submission"] for line in lines] == ["a.py", "b.py"]
    spans = lines[0]["spans"]
    assert set(spans) == {"plan", "expected", "expected:main/startup", "main/startup",
                          "main/import", "main/Q2-public"}
    assert spans["main/startup"][1] == spans["main/import"][0]  # a phase ends as the next starts
    assert spans["main/import"][1] == spans["main/Q2-public"][0]
    for start, end in spans.values():
        assert 0 <= start <= end <= lines[0]["total"]
