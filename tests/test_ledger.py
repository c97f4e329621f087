"""grader/ledger.py, grader/lms.py and the ledger's parts of grader/batch/: stored
measurements, manual scores, the late policy, rescore, the LMS files.

The fast tests compose gradebooks from recorded measurements (no TensorFlow, no
child).  The end-to-end tests (``tf``) grade a small Canvas class from the corpus.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import grader_main
from grader import engine, ledger, lms, sandbox, summary, supervise, zygote
from grader.batch import discover
from grader.batch.grading import Outcome
from grader.batch.run import note_grading, write_summary
from grader.batch.state import Output, resume_key
from grader.batch.discovery import Submission
from grader.errors import RubricError, UsageError
from grader.outcome import ProbeOutput
from grader.report import Report
from grader.rubric import LatePolicy, load_rubric, parse_rubric

ROOT = Path(__file__).resolve().parents[1]
RUBRIC = load_rubric(ROOT / "rubric.yaml")
DUE = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
LONG = ("I would use a better weight initialization and tune the learning rate with a schedule, "
        "then add dropout to reduce overfitting and train for more epochs with a larger batch "
        "size, because each of these helps the network generalise to the test images.")


def rubric_data(mode: str = "manual") -> dict:
    data = yaml.safe_load((ROOT / "rubric.yaml").read_text())
    for q in data["questions"]:
        if q["id"] == "Q11":
            q["checks"][0]["mode"] = mode
    return data


def q11_rubric(tmp_path: Path, name: str = "q11.yaml", points: float = 5, mode: str = "manual",
               policy: dict | None = None) -> Path:
    """The rubric with only Q11 (no reference output needed, nothing to train)."""
    data = rubric_data(mode)
    data["questions"] = [dict(q, points=points) for q in data["questions"] if q["id"] == "Q11"]
    if policy:
        data["late_policy"] = policy
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FACTS = {"problem": "", "extracted": False, "isolation": "full", "confinement": "",
         "startup": "fresh"}


def answered(text: str) -> ProbeOutput:
    return ProbeOutput("ok", meta={"text_type": "str", "text": text})


def record_class(tmp_path: Path, rubric_path: Path, answers: dict[str, str],
                 infos: dict | None = None, **options) -> Output:
    """A batch's DIR as batch leaves it, from recorded measurements (no child runs)."""
    rubric = load_rubric(rubric_path)
    context = ledger.measurement_base(rubric, "auto")
    output = Output(tmp_path / "out", rubric, context, **options)
    note_grading(output, "auto", ("public", "hidden"))
    tasks = engine.plan(rubric, ("public", "hidden"))
    output.plan(tasks, ledger.task_keys(context, tasks), ("public", "hidden"))
    output.set_reference({t.id: answered(LONG) for t in tasks})
    placeholder = Report("x", 0.0, 0.0, (), "full", "all", 0.0, "x", "y")
    for name, text in answers.items():
        graded = text.encode()
        (output.graded / f"{name}.py").write_bytes(graded)
        sub = Submission(name, f"{name}.py", output.graded / f"{name}.py",
                         info=(infos or {}).get(name, {}))
        got = {t.id: answered(text) for t in tasks}
        output.record(sub, resume_key(graded, context),
                      Outcome(placeholder, "", 0.1, {"got": got, "facts": FACTS}))
    write_summary(output, "files", [], "src", True, {"jobs": 1})
    return output


def gradebook(out: Path) -> dict[str, dict]:
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    return {r["student"]: r for r in rows}


@pytest.fixture
def no_child(monkeypatch):
    """Any attempt to start a sandbox, a zygote or a child fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a child was started")
    for module, name in ((engine, "probe"), (engine, "run_probes"), (supervise, "run_probes"),
                         (supervise, "probe"), (zygote, "for_env"), (engine, "prestart"),
                         (sandbox, "detect_isolation"), (engine, "expected_outputs")):
        monkeypatch.setattr(module, name, refuse)


# ------------------------------------------------------------------ composition

def test_a_pending_item_is_empty_never_zero_and_a_manual_score_fills_it():
    entry = {"auto": {"Q2": 5.0, "Q11": None}}
    row = ledger.compose_row(entry, ["Q2", "Q11"], {}, None)
    assert row["scores"] == {"Q2": 5.0, "Q11": None} and row["pending"] == ["Q11"]
    assert row["total"] is None and row["raw"] == 5.0
    row = ledger.compose_row(entry, ["Q2", "Q11"], {"Q11": ledger.Manual(3.5, "good")}, None)
    assert row["total"] == 8.5 and row["pending"] == [] and row["overrides"] == []
    comment_only = ledger.compose_row(entry, ["Q2", "Q11"], {"Q11": ledger.Manual(None, "hm")},
                                      None)
    assert comment_only["pending"] == ["Q11"]


def test_an_override_is_flagged_for_review_when_the_automatic_score_changes_under_it():
    manual = {"Q2": ledger.Manual(4.0, "partial credit for the shapes")}
    first = ledger.compose_row({"auto": {"Q2": 2.5}}, ["Q2"], manual, None)
    assert first["scores"]["Q2"] == 4.0 and first["overrides"] == ["Q2"]
    assert first["review"] == [] and first["override_base"] == {"Q2": 2.5}
    same = ledger.compose_row({"auto": {"Q2": 2.5}, "override_base": first["override_base"]},
                              ["Q2"], manual, None)
    assert same["review"] == []
    moved = ledger.compose_row({"auto": {"Q2": 5.0}, "override_base": first["override_base"]},
                               ["Q2"], manual, None)
    assert moved["review"] == ["Q2"] and moved["scores"]["Q2"] == 4.0


def test_the_late_penalty_counts_units_started_after_grace_caps_and_clamps():
    policy = LatePolicy(due=DUE, penalty_percent=10, per="day", grace_minutes=30, max_percent=25)
    at = lambda hours: (DUE.timestamp() + hours * 3600)   # noqa: E731
    iso = lambda hours: datetime.fromtimestamp(at(hours), timezone.utc).isoformat()  # noqa: E731
    assert ledger.late_hours(policy, iso(-5), False) == 0.0
    assert ledger.late_penalty(policy, 80, ledger.late_hours(policy, iso(0.4), False)) == 0.0
    assert ledger.late_penalty(policy, 80, ledger.late_hours(policy, iso(1), False)) == 8.0
    assert ledger.late_penalty(policy, 80, ledger.late_hours(policy, iso(30), False)) == 16.0
    assert ledger.late_penalty(policy, 80, ledger.late_hours(policy, iso(24 * 9), False)) == 20.0
    assert ledger.late_hours(policy, iso(30), False, extra_hours=48) == 0.0
    assert ledger.late_hours(policy, "", True) == 24.0       # flagged late, no time: one day
    assert ledger.late_hours(policy, "", False) is None
    hourly = LatePolicy(due=DUE, penalty_percent=60, per="hour")
    assert ledger.late_penalty(hourly, 10, 2.5) == 10        # never more than the raw score
    assert ledger.late_penalty(hourly, 0, 2.5) == 0
    row = ledger.compose_row({"auto": {"Q2": 5.0}, "info": {"submitted_at": iso(2)}}, ["Q2"],
                             {}, policy)
    assert (row["raw"], row["penalty"], row["total"], row["hours_late"]) == (5.0, 0.5, 4.5, 2.0)


def test_the_late_policy_is_validated_with_key_paths(tmp_path):
    data = rubric_data()
    data["late_policy"] = {"due": "tomorrow", "penalty_percent": 150, "per": "week",
                           "grace": 5}
    with pytest.raises(RubricError) as exc:
        parse_rubric(data, tmp_path / "rubric.yaml")
    text = str(exc.value)
    for path in ("late_policy.due: 'tomorrow' is not a date", "late_policy.penalty_percent",
                 "late_policy.per: 'week' is not one of day, hour", "late_policy.grace: unknown"):
        assert path in text, text
    data["late_policy"] = {"due": "2026-12-01T12:00", "penalty_percent": 10,
                           "extensions": "ext.csv"}
    policy = parse_rubric(data, tmp_path / "rubric.yaml").late_policy
    assert policy.due == DUE and policy.per == "day" and policy.max_percent == 100
    assert policy.extensions == tmp_path / "ext.csv"
    assert RUBRIC.late_policy is None            # the shipped rubric changes nothing


# ------------------------------------------------------------------ the store

def test_measurements_round_trip_and_anything_malformed_is_refused():
    outputs = {"Q5-public": ProbeOutput("ok", meta={"cost": 0.5},
                                        arrays={"cost": __import__("numpy").arange(3.0)}),
               "Q6-public": ProbeOutput.failure("timeout", "ran out of time", "tb",
                                                unanswered=True)}
    data = ledger.encode_measurements(outputs, {"Q5-public": "k5", "Q6-public": "k6"},
                                      {"problem": ""})
    facts, back = ledger.decode_measurements(data)
    assert facts == {"problem": ""} and back["Q5-public"][0] == "k5"
    assert back["Q5-public"][1].meta == {"cost": 0.5}
    assert list(back["Q5-public"][1].arrays["cost"]) == [0.0, 1.0, 2.0]
    six = back["Q6-public"][1]
    assert (six.status, six.message, six.unanswered, six.arrays) == ("timeout", "ran out of time",
                                                                     True, {})
    for bad in (data[:-3], data[:2], struct.pack("<I", 2**31) + data[4:], b"",
                data + data[: len(data) // 2]):
        with pytest.raises(ledger.LedgerError):
            ledger.decode_measurements(bad)
    forged = ledger.encode_measurements({}, {}, {})[4:]
    with pytest.raises(ledger.LedgerError):   # a task named like the facts, twice
        ledger.decode_measurements(data + struct.pack("<I", len(forged)) + forged)


def test_stored_measurements_are_read_with_their_size_bounded(tmp_path):
    path = tmp_path / "a.results"
    path.write_bytes(ledger.encode_measurements({}, {}, {}))
    assert ledger.read_measurements(path, 1000)[0] == {}
    with pytest.raises(ledger.LedgerError, match="at most 10 bytes"):
        ledger.read_measurements(path, 10)
    (tmp_path / "link.results").symlink_to(path)
    with pytest.raises(ledger.LedgerError):
        ledger.read_measurements(tmp_path / "link.results", 1000)


def test_a_measurement_key_changes_with_what_the_child_is_given_not_with_points(tmp_path):
    base = ledger.measurement_base(RUBRIC, "auto")
    tasks = engine.plan(RUBRIC, ("public",))
    keys = ledger.task_keys(base, tasks)
    data = rubric_data("completion")
    for q in data["questions"]:
        if q["id"] == "Q5":
            q["points"] = 20
            q["checks"][0]["weight"] = 7
        if q["id"] == "Q6":
            q["params"]["public"] = {**(q.get("params") or {}).get("public", {})} or q["params"]
    data["tolerances"]["rtol"] = 0.01
    changed = parse_rubric(data, ROOT / "rubric.yaml")
    again = ledger.task_keys(ledger.measurement_base(changed, "auto"),
                             engine.plan(changed, ("public",)))
    assert again == keys
    data["public_seed"] += 1                     # new inputs: every public task runs again
    reseeded = parse_rubric(data, ROOT / "rubric.yaml")
    assert ledger.task_keys(base, engine.plan(reseeded, ("public",)))["Q5-public"] != \
        keys["Q5-public"]
    assert ledger.measurement_base(RUBRIC, "basic") != base


# ------------------------------------------------------------------ manual scores

def test_a_manual_file_with_a_bad_line_is_refused_naming_the_line(tmp_path):
    points = {"Q2": 5.0, "Q11": 5.0}
    names = {"ann": "ann"}
    bad = {"item": ("student,item,points,comment\nann,Q99,1,x\n", "line 2: 'Q99' is not an item"),
           "points": ("student,item,points\nann,Q11,lots\n", "points 'lots' is not a number"),
           "range": ("student,item,points\n\nann,Q11,7\n", "7 points is outside 0..5"),
           "header": ("name,item,score\n", "no column student, points")}
    for what, (text, message) in bad.items():
        path = tmp_path / f"{what}.csv"
        path.write_text(text)
        with pytest.raises(UsageError, match=message):
            ledger.parse_manual(ledger.read_table(path, ("student", "item", "points"), "--manual"),
                                path.name, points, names)
    path = tmp_path / "ok.csv"
    path.write_text("student,item,points,comment\nann,Q11,4.5,  clear  and short\nbob,Q2,1,\n"
                    "ann,Q2,,see me\n")
    found, warnings = ledger.parse_manual(ledger.read_table(path, ("student", "item", "points"),
                                                            "--manual"), "ok.csv", points, names)
    assert found == {("ann", "Q11"): ledger.Manual(4.5, "clear and short"),
                     ("ann", "Q2"): ledger.Manual(None, "see me")}
    assert warnings == ["ok.csv line 3: no student 'bob' in the gradebook"]


def test_manual_scores_merge_into_every_file_and_survive_a_rescore(tmp_path, no_child):
    rubric = q11_rubric(tmp_path)
    output = record_class(tmp_path, rubric, {"ann": LONG, "bob": LONG + " Also convolutions.",
                                             "cy": "", "dee": LONG},
                          {"ann": {"canvas_user_id": "101", "user_id": "101", "name": "Ann"},
                           "bob": {"email": "bob@example.edu", "user_id": "bob@example.edu"}},
                          lms="canvas")
    out = output.out
    rows = gradebook(out)
    assert rows["ann"]["Q11"] == "" and rows["ann"]["total"] == "" and rows["ann"]["pending"] == "Q11"
    assert rows["cy"]["Q11"] == "0" and rows["cy"]["total"] == "0"   # nothing written: no answer
    canvas = list(csv.reader(io.StringIO((out / "canvas_import.csv").read_text())))
    assert canvas[2] == ["Ann", "101", "", "", "", ""]       # pending: Canvas keeps its grade
    assert canvas[3] == ["bob", "", "", "bob@example.edu", "", ""]
    page = (out / "summary.html").read_text()
    assert "items pending (graded by hand)" in page
    built = json.loads((out / "summary.json").read_text())
    assert next(i for i in built["items"] if i["id"] == "Q11")["pending"] == 3
    assert next(i for i in built["items"] if i["id"] == "Q11")["unanswered"] == 1
    assert next(i for i in built["items"] if i["id"] == "Q11")["common_mistakes"] == []

    review = list(csv.DictReader(io.StringIO((out / "review" / "Q11.csv").read_text())))
    assert [r["student"] for r in review] == ["ann", "bob", "cy", "dee"]
    assert review[1]["answer"].endswith("Also convolutions.")
    assert "Also convolutions." in (out / "review" / "Q11.html").read_text()
    filled = tmp_path / "scores.csv"
    filled.write_text("student,item,points,comment\nann,Q11,4,good ideas\nbob,Q11,5,\n"
                      "cy,Q11,1,an attempt counts\n")
    code, _, err = grader_main(["rescore", str(out), "--rubric", str(rubric), "--manual",
                                str(filled)])
    assert code == 0, err
    rows = gradebook(out)
    assert (rows["ann"]["Q11"], rows["ann"]["total"], rows["ann"]["overrides"]) == ("4", "4", "")
    assert (rows["cy"]["Q11"], rows["cy"]["overrides"]) == ("1", "Q11")   # over an automatic 0
    assert rows["dee"]["pending"] == "Q11"
    report = json.loads((out / "reports" / "ann.json").read_text())
    assert report["total"] == 4 and report["comments"] == {"Q11": "good ideas"}
    assert "good ideas" in (out / "reports" / "ann.txt").read_text()
    assert "Ann,101,,,,4" in (out / "canvas_import.csv").read_text()
    with zipfile.ZipFile(out / "feedback.zip") as zf:
        assert "good ideas" in zf.read("ann.txt").decode()

    # the points of Q11 change: a rescore, the manual scores kept (clamped by the new rubric)
    bigger = q11_rubric(tmp_path, "q11-10.yaml", points=10)
    code, _, err = grader_main(["rescore", str(out), "--rubric", str(bigger)])
    assert code == 0, err
    rows = gradebook(out)
    assert rows["ann"]["Q11"] == "4" and rows["bob"]["Q11"] == "5" and rows["dee"]["Q11"] == ""


def test_rescore_applies_a_changed_late_policy_and_extensions_without_a_child(tmp_path, no_child):
    policy = {"due": DUE.isoformat(), "penalty_percent": 10, "per": "day", "max_percent": 50}
    rubric = q11_rubric(tmp_path, mode="completion", policy=policy)
    late = datetime.fromtimestamp(DUE.timestamp() + 30 * 3600, timezone.utc).isoformat()
    output = record_class(tmp_path, rubric, {"ann": LONG, "bob": LONG},
                          {"ann": {"submitted_at": late, "late": True}})
    rows = gradebook(output.out)
    assert (rows["ann"]["raw"], rows["ann"]["penalty"], rows["ann"]["total"]) == ("5", "1", "4")
    assert rows["ann"]["hours_late"] == "30" and rows["bob"]["penalty"] == ""
    (tmp_path / "extensions.csv").write_text("student,extra_hours\nann,48\n")
    policy.update(per="hour", extensions="extensions.csv")
    q11_rubric(tmp_path, mode="completion", policy=policy)
    code, _, err = grader_main(["rescore", str(output.out), "--rubric", str(rubric)])
    assert code == 0, err
    assert gradebook(output.out)["ann"]["total"] == "5"
    policy.pop("extensions")
    q11_rubric(tmp_path, mode="completion", policy=policy)
    code, _, err = grader_main(["rescore", str(output.out), "--rubric", str(rubric)])
    assert code == 0, err
    assert (gradebook(output.out)["ann"]["penalty"], gradebook(output.out)["ann"]["total"]) == \
        ("2.5", "2.5")                                     # capped at 50%
    page = (output.out / "summary.html").read_text()
    assert "Needs follow-up" in page and "30 h, -2.5" in page


def test_rescore_names_the_items_that_need_new_runs_and_writes_nothing(tmp_path, no_child):
    rubric = q11_rubric(tmp_path, mode="completion")
    output = record_class(tmp_path, rubric, {"ann": LONG})
    before = (output.out / "gradebook.csv").read_text()
    data = yaml.safe_load(rubric.read_text())
    data["questions"][0]["budget_seconds"] = 30        # what the child is given
    rubric.write_text(yaml.safe_dump(data))
    code, _, err = grader_main(["rescore", str(output.out), "--rubric", str(rubric)])
    assert code == 2 and "new runs are needed for Q11 (1 students)" in err
    assert "--items Q11" in err
    assert (output.out / "gradebook.csv").read_text() == before


def test_a_rubric_edited_in_another_folder_is_scored_with_the_class_grading_key(
        tmp_path, no_child, monkeypatch):
    """The hidden inputs come from the key beside the rubric: a copy of the rubric edited
    elsewhere must not make a new key (every hidden input would change), and a different
    key there is refused by name."""
    monkeypatch.delenv("GRADER_KEY_FILE", raising=False)
    data = rubric_data("completion")
    data["questions"] = [q for q in data["questions"] if q["id"] in ("Q5", "Q11")]
    course, elsewhere = tmp_path / "course", tmp_path / "elsewhere"
    course.mkdir()
    elsewhere.mkdir()
    (course / "rubric.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    output = record_class(tmp_path, course / "rubric.yaml", {"ann": LONG, "bob": LONG})
    assert (course / "grading.key").is_file()
    data["questions"][0]["checks"][0]["weight"] = 3
    (elsewhere / "rubric.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, err = grader_main(["rescore", str(output.out), "--rubric",
                                str(elsewhere / "rubric.yaml")])
    assert code == 0, err
    assert not (elsewhere / "grading.key").exists()      # the class's key was used, none made
    assert "GRADER_KEY_FILE" not in __import__("os").environ

    (elsewhere / "grading.key").write_text("ab" * 32 + "\n")
    before = (output.out / "gradebook.csv").read_text()
    code, _, err = grader_main(["rescore", str(output.out), "--rubric",
                                str(elsewhere / "rubric.yaml")])
    assert code == 2 and "not the grading key" in err and str(course / "grading.key") in err
    assert (output.out / "gradebook.csv").read_text() == before

    (elsewhere / "grading.key").unlink()
    (course / "grading.key").unlink()
    code, _, err = grader_main(["rescore", str(output.out), "--rubric",
                                str(elsewhere / "rubric.yaml")])
    assert code == 2 and "which is gone or changed" in err
    assert not (elsewhere / "grading.key").exists()


def test_a_damaged_stored_result_is_that_rows_problem(tmp_path, no_child):
    rubric = q11_rubric(tmp_path, mode="completion")
    output = record_class(tmp_path, rubric, {"ann": LONG, "bob": LONG})
    (output.measured / "bob.results").write_bytes(b"\0\0\0\x10garbage")
    data = yaml.safe_load(rubric.read_text())
    data["tolerances"]["rtol"] = 0.001            # every check runs again: outputs are read
    rubric.write_text(yaml.safe_dump(data))
    code, _, err = grader_main(["rescore", str(output.out), "--rubric", str(rubric)])
    assert code == 1 and "not rescored (regrade with batch --only): bob: a stored result" in err
    rows = gradebook(output.out)
    assert rows["ann"]["total"] == "5" and rows["bob"]["total"] == "5"   # bob keeps his row
    (output.measured / "bob.results").write_bytes(
        (output.measured / "ann.results").read_bytes()[:-5])
    output = Output(output.out, load_rubric(rubric), output.context)
    tasks = engine.plan(output.rubric, ("public", "hidden"))
    output.plan(tasks, ledger.task_keys(output.context, tasks), ("public", "hidden"))
    output.set_reference({t.id: answered(LONG) for t in tasks})
    output.students["bob"]["verdicts"] = {}
    with pytest.raises(ledger.LedgerError):
        output.recompose("bob")
    assert output.recompose("ann")["total"] == 5


# ------------------------------------------------------------------ LMS exports

def test_a_gradescope_group_gives_one_row_per_member_with_its_time(tmp_path):
    root = tmp_path / "export"
    (root / "submission_1").mkdir(parents=True)
    (root / "submission_1" / "tensorflow_tutorial.py").write_text("x = 1\n")
    (root / "submission_metadata.yml").write_text(
        "submission_1:\n  :created_at: 2026-12-02 10:30:00.000000000 +00:00\n"
        "  :submitters:\n  - :name: Ada Lovelace\n    :sid: '1004'\n    :email: ada@x.edu\n"
        "  - :name: Alan Turing\n    :sid: '1005'\n    :email: alan@x.edu\n")
    found = discover(tmp_path, RUBRIC)
    rows = {s.student: s for s in found.submissions}
    assert sorted(rows) == ["Ada_Lovelace+1004", "Alan_Turing+1005"]
    ada = rows["Ada_Lovelace+1004"].info
    assert ada["email"] == "ada@x.edu" and ada["user_id"] == "1004" and ada["group"] == ["Alan Turing"]
    assert ada["submitted_at"].startswith("2026-12-02T10:30:00")
    assert rows["Alan_Turing+1005"].path == rows["Ada_Lovelace+1004"].path


def test_a_canvas_zip_upload_is_unpacked_and_its_file_found(tmp_path):
    src, scratch = tmp_path / "src", tmp_path / "scratch"
    src.mkdir()
    scratch.mkdir()
    with zipfile.ZipFile(src / "lovelace_LATE_101_5001_project.zip", "w") as zf:
        zf.writestr(zipfile.ZipInfo("project/tensorflow_tutorial.py", (2026, 12, 2, 9, 0, 0)),
                    "x = 1\n")
        zf.writestr("project/notes.md", "hi")
        zf.writestr("../../escape.py", "x = 2\n")
    with zipfile.ZipFile(src / "turing_102_5002_broken.zip", "w") as zf:
        zf.writestr("readme.txt", "no code")
    (src / "hopper_103_5003_tensorflow_tutorial.py").write_text("x = 3\n")
    found = discover(src, RUBRIC, scratch=scratch)
    rows = {s.student: s for s in found.submissions}
    ada = rows["lovelace+101"]
    assert ada.status is None and ada.path.read_text() == "x = 1\n"
    assert ada.source == "lovelace_LATE_101_5001_project.zip:project/tensorflow_tutorial.py"
    assert ada.info["late"] is True and ada.info["submitted_at"]
    assert rows["turing+102"].status == "skipped-not-python"
    assert "in the uploaded zip" in rows["turing+102"].reason
    assert "submitted_at" not in rows["hopper+103"].info      # not flagged late
    assert any("escape.py" in i["path"] for i in found.ignored)
    assert not (tmp_path / "escape.py").exists()
    without = {s.student: s for s in discover(src, RUBRIC).submissions}
    assert without["lovelace+101"].status == "skipped-not-python"


def test_a_zip_of_an_export_keeps_its_file_times(tmp_path):
    from grader.batch.discovery import open_source
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("a_LATE_1_2_tensorflow_tutorial.py", (2026, 12, 3, 8, 0, 0)),
                    "x = 1\n")
    (tmp_path / "scratch").mkdir()
    root, _ = open_source(archive, tmp_path / "scratch")
    found = discover(root, RUBRIC)
    assert found.submissions[0].info["submitted_at"] == "2026-12-03T08:00:00+00:00"


def test_canvas_csv_column_numbers_and_logins():
    students = {"a+1": {"status": "graded", "total": 690 / 7, "info": {"canvas_user_id": "1",
                                                                      "name": "A"}},
                "b": {"status": "graded", "total": 50.0, "info": {"email": "b@x.edu"}},
                "c": {"status": "graded", "total": 50.0, "info": {}},
                "d+4": {"status": "ungradable", "total": None, "info": {"canvas_user_id": "4"}}}
    text = lms.canvas_csv(RUBRIC, students, "HW 3 (TensorFlow)")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-1] == "HW 3 (TensorFlow)" and rows[1][-1] == "100"
    assert rows[2:] == [["A", "1", "", "", "", "98.6"], ["b", "", "", "b@x.edu", "", "50"],
                        ["d+4", "4", "", "", "", ""]]


# ------------------------------------------------------------------ summary

def test_summary_groups_a_diagnosis_and_its_counts_agree():
    sixteen = "the cost is 16x the expected value, and the batch has 16 examples"
    students = {
        "a": {"status": "graded", "scores": {"Q5": 2.0}, "total": 2.0, "mistakes": {"Q5": [sixteen]}},
        "b": {"status": "graded", "scores": {"Q5": 2.0}, "total": 2.0,
              "mistakes": {"Q5": [sixteen.replace("16", "37")]}},
        "c": {"status": "import-error", "scores": {"Q5": 0.0}, "total": 0.0, "reason": "x",
              "mistakes": {"Q11": ["write at least 25 words"]}, "unanswered": ["Q11"]},
        "d": {"status": "timeout", "scores": {"Q5": 0.0}, "total": 0.0},
        "e": {"status": "skipped-not-python", "reason": "pdf"}}
    built = summary.build(RUBRIC, students, layout="files", ignored=[], source="s",
                          complete=True, timing={})
    q5 = next(i for i in built["items"] if i["id"] == "Q5")
    assert [(m["count"], m["students"]) for m in q5["common_mistakes"]] == [(2, ["a", "b"])]
    assert q5["common_mistakes"][0]["mistake"].startswith("the cost is Nx the expected value")
    assert next(i for i in built["items"] if i["id"] == "Q11")["common_mistakes"] == []
    page = summary.render_html(built, students, RUBRIC)
    assert "4 scored (2 graded, 1 import-error, 1 timeout)" in page
    assert "1 not scored (1 skipped-not-python)" in page
    assert built["scored"] == 4 and built["items"][-1]["count"] == 4
    students["a"]["flags"] = ["similar to b"]
    page = summary.render_html(built, students, RUBRIC)
    assert "<th>flags</th>" in page and "similar to b" in page


# ------------------------------------------------------------------ end to end (tf)

REFERENCE = ROOT / "reference" / "tensorflow_tutorial.py"
STARTER = ROOT / "starter" / "tensorflow_tutorial.py"
COST_MEAN = "return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=Z2))"
CLASS_DUE = datetime(2026, 12, 1, 23, 59, tzinfo=timezone.utc)


def e2e_rubric(tmp_path: Path, name: str = "rubric.yaml", policy: dict | None = None,
               q5_weight: float | None = None) -> Path:
    """rubric.yaml with Q11 graded by hand and a short import budget."""
    data = rubric_data("manual")
    data["limits"]["import_seconds"] = 4
    data["limits"]["startup_seconds"] = 600   # bounds a hang only: these machines are shared
    if policy:
        data["late_policy"] = policy
    if q5_weight is not None:
        q5 = next(q for q in data["questions"] if q["id"] == "Q5")
        q5["checks"][0]["weight"] = q5_weight
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def canvas_class(src: Path) -> None:
    """A Canvas export of eleven students, built from the reference, the starter and the
    corpus's mistakes; two late, one a zip upload."""
    import os
    src.mkdir()
    reference, starter = REFERENCE.read_text(), STARTER.read_text()
    answer = 'IMPROVEMENTS = """' + LONG + '"""\n'
    files = {"alice_101_1_tensorflow_tutorial.py": reference,
             "bob_102_2_tensorflow_tutorial.py": starter,
             "carl_LATE_103_3_tensorflow_tutorial.py": reference.replace(
                 COST_MEAN, COST_MEAN.replace("mean", "sum")),
             "hal_109_9_tensorflow_tutorial.py": starter.replace('IMPROVEMENTS = ""', answer),
             "ivan_106_6_tensorflow_tutorial.py": "import no_such_module_for_grading\n",
             "kim_111_11_tensorflow_tutorial.py": starter + "\n# my work is in progress\n",
             "ned_113_13_tensorflow_tutorial.py": "def broken(:\n",
             "fay_107_7_report.pdf": "%PDF-1.4\n",
             "max_112_12_answers.txt": "I did it on paper\n"}
    for name, text in files.items():
        (src / name).write_text(text)
    with zipfile.ZipFile(src / "erin_LATE_105_5_project.zip", "w") as zf:
        zf.writestr("project/tensorflow_tutorial.py", reference)
        zf.writestr("project/mnist_loader.py", "# provided\n")
    with zipfile.ZipFile(src / "jo_110_10_notes.zip", "w") as zf:
        zf.writestr("notes.md", "nothing to run")
    for name, hours in (("carl_LATE_103_3_tensorflow_tutorial.py", 30),
                        ("erin_LATE_105_5_project.zip", 2)):
        when = CLASS_DUE.timestamp() + hours * 3600
        os.utime(src / name, (when, when))


@pytest.mark.tf
def test_a_term_of_a_canvas_class_manual_scores_items_force_and_late_policy(tmp_path,
                                                                           monkeypatch):
    src, out = tmp_path / "class", tmp_path / "out"
    canvas_class(src)
    rubric = e2e_rubric(tmp_path)
    code, _, err = grader_main(["batch", str(src), "--out", str(out), "--rubric", str(rubric),
                                "--jobs", "2", "--lms", "canvas", "--canvas-column", "HW3"])
    assert code == 0, err
    rows = gradebook(out)
    assert {n.split("+")[0]: r["status"] for n, r in rows.items()} == {
        "alice": "graded", "bob": "graded", "carl": "graded", "erin": "graded", "hal": "graded",
        "kim": "graded", "ivan": "graded", "ned": "import-error",
        "fay": "skipped-not-python", "jo": "skipped-not-python", "max": "skipped-not-python"}
    alice, carl, erin = rows["alice+101"], rows["carl+103"], rows["erin+105"]
    # Q11 is graded by hand: pending, an empty cell (never 0), no total yet
    assert (alice["Q11"], alice["total"], alice["raw"], alice["pending"]) == ("", "", "95", "Q11")
    assert erin["source"] == "erin_LATE_105_5_project.zip:project/tensorflow_tutorial.py"
    assert erin["raw"] == "95" and erin["late"] == "true" and carl["late"] == "true"
    assert float(carl["Q5"]) < 10 and rows["bob+102"]["Q11"] == "0"   # no answer: not pending
    canvas = list(csv.reader(io.StringIO((out / "canvas_import.csv").read_text())))
    assert canvas[0][-1] == "HW3"
    by_id = {r[1]: r[-1] for r in canvas[2:]}
    assert by_id["101"] == "" and by_id["102"] == "0" and by_id["106"] == "0"
    review = list(csv.DictReader(io.StringIO((out / "review" / "Q11.csv").read_text())))
    answers = {r["student"]: r["answer"] for r in review}
    assert sorted(answers) == sorted(n for n, r in rows.items() if r["total"] != "" or r["pending"])
    assert "early stopping" in answers["alice+101"] and LONG in answers["hal+109"]
    built = json.loads((out / "summary.json").read_text())
    statuses = {}
    for r in rows.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    assert built["counts"] == statuses and built["scored"] == 8
    assert built["items"][-1]["count"] == sum(1 for r in rows.values() if r["total"] != "")
    page = (out / "summary.html").read_text()
    assert "11 students" in page and "8 scored (" in page and "3 not scored (" in page

    # manual scores and an override, merged by a rescore: nothing runs
    manual = tmp_path / "manual.csv"
    manual.write_text("student,item,points,comment\nalice+101,Q11,4,clear\n"
                      "carl+103,Q11,3,\ncarl+103,Q5,8,the sum is half right\nerin+105,Q11,5,\n"
                      "hal+109,Q11,2,short on reasons\n")
    with monkeypatch.context() as m:
        def refuse(*args, **kwargs):
            raise AssertionError("a child was started")
        for module, name in ((engine, "grade"), (supervise, "run_probes"), (zygote, "for_env"),
                             (engine, "expected_outputs"), (sandbox, "detect_isolation")):
            m.setattr(module, name, refuse)
        code, _, err = grader_main(["rescore", str(out), "--rubric", str(rubric), "--manual",
                                    str(manual)])
    assert code == 0, err
    rows = gradebook(out)
    assert (rows["alice+101"]["total"], rows["carl+103"]["Q5"], rows["carl+103"]["overrides"]) \
        == ("99", "8", "Q5")
    assert "the sum is half right" in (out / "reports" / "carl+103.txt").read_text()
    canvas = {r[1]: r[-1] for r in csv.reader(io.StringIO((out / "canvas_import.csv").read_text()))}
    assert canvas["101"] == "99" and canvas["105"] == "100"

    # --items Q5: only Q5's tasks run again, for every graded student; manual scores stay
    ran = []
    original = engine.grade

    def spy(path, rubric_, visibilities, isolation="auto", prepared=None, **kwargs):
        ran.append(sorted({t.item.id for t in prepared[0]}) if prepared else ["all"])
        return original(path, rubric_, visibilities, isolation, prepared=prepared, **kwargs)

    monkeypatch.setattr(engine, "grade", spy)
    code, _, err = grader_main(["batch", str(src), "--out", str(out), "--rubric", str(rubric),
                                "--items", "Q5"])
    assert code == 0, err
    assert ran == [["Q5"]] * 8, ran
    assert "run again only for Q5 (8 students)" in err
    again = gradebook(out)
    assert again == rows

    # a forced regrade of two students keeps every manual score and override
    ran.clear()
    code, _, err = grader_main(["batch", str(src), "--out", str(out), "--rubric", str(rubric),
                                "--force", "--only", "alice+101", "carl+103"])
    assert code == 0, err
    assert len(ran) == 2 and all(r != ["Q5"] for r in ran)
    assert gradebook(out) == rows
    monkeypatch.setattr(engine, "grade", original)

    # a late policy and a weight, changed through rescore: no child
    policy = {"due": CLASS_DUE.isoformat(), "penalty_percent": 10, "per": "day"}
    changed = e2e_rubric(tmp_path, "late.yaml", policy=policy, q5_weight=3)
    with monkeypatch.context() as m:
        for module, name in ((engine, "grade"), (supervise, "run_probes"), (zygote, "for_env"),
                             (engine, "expected_outputs"), (sandbox, "detect_isolation")):
            m.setattr(module, name, refuse)
        code, _, err = grader_main(["rescore", str(out), "--rubric", str(changed)])
        assert code == 0, err
        late = gradebook(out)
        carl_raw = float(late["carl+103"]["raw"])          # two days started: 20% of the raw
        assert late["carl+103"]["hours_late"] == "30" and late["carl+103"]["Q5"] == "8"
        assert float(late["carl+103"]["penalty"]) == pytest.approx(carl_raw * 0.2, abs=0.051)
        assert float(late["carl+103"]["total"]) == pytest.approx(carl_raw * 0.8, abs=0.051)
        assert (late["erin+105"]["penalty"], late["erin+105"]["total"]) == ("10", "90")
        assert late["alice+101"]["total"] == "99" and late["alice+101"]["penalty"] == ""
        policy.update(per="hour", penalty_percent=1)
        e2e_rubric(tmp_path, "late.yaml", policy=policy, q5_weight=3)
        code, _, err = grader_main(["rescore", str(out), "--rubric", str(changed)])
        assert code == 0, err
        assert gradebook(out)["erin+105"]["total"] == "98"


@pytest.mark.tf
def test_a_gradescope_export_with_a_group_maps_to_canvas_logins(tmp_path):
    root = tmp_path / "export"
    for n in (1, 2):
        (root / f"submission_{n}").mkdir(parents=True)
    (root / "submission_1" / "tensorflow_tutorial.py").write_text(STARTER.read_text())
    (root / "submission_2" / "tensorflow_tutorial.py").write_text("import no_such_module\n")
    (root / "submission_metadata.yml").write_text(
        "submission_1:\n  :created_at: 2026-12-02 10:30:00 +00:00\n  :submitters:\n"
        "  - :name: Ada Lovelace\n    :sid: '1004'\n    :email: ada@x.edu\n"
        "  - :name: Alan Turing\n    :sid: '1005'\n    :email: alan@x.edu\n"
        "submission_2:\n  :submitters:\n  - :name: Grace Hopper\n    :email: grace@x.edu\n")
    out = tmp_path / "out"
    code, _, err = grader_main(["batch", str(root), "--out", str(out), "--rubric",
                                str(e2e_rubric(tmp_path)), "--lms", "canvas"])
    assert code == 0, err
    rows = gradebook(out)
    assert sorted(rows) == ["Ada_Lovelace+1004", "Alan_Turing+1005", "Grace_Hopper+grace_x.edu"]
    canvas = list(csv.reader(io.StringIO((out / "canvas_import.csv").read_text())))
    assert [(r[0], r[1], r[3], r[5]) for r in canvas[2:]] == [
        ("Ada Lovelace", "", "ada@x.edu", "0"), ("Alan Turing", "", "alan@x.edu", "0"),
        ("Grace Hopper", "", "grace@x.edu", "0")]
