"""grader/keys.py and the seeds plan.py derives from it: a hidden input or seed tells a child
nothing it could use to find the rubric's seed, the key, or another input."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from grader import keys
from grader.errors import UngradableError
from grader.plan import child_seed, plan
from grader.probes import PROBES
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rubric(tmp_path, monkeypatch):
    """The real rubric, copied into an empty folder, with no key anywhere yet."""
    monkeypatch.delenv(keys.KEY_VARIABLE, raising=False)
    path = tmp_path / "rubric.yaml"
    path.write_text((ROOT / "rubric.yaml").read_text())
    return load_rubric(path)


def test_the_key_is_made_once_beside_the_rubric_private_and_random(rubric):
    first = keys.load_or_create(rubric.path)
    path = rubric.path.parent / keys.KEY_NAME
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == keys.KEY_BYTES >= 16
    assert keys.load_or_create(rubric.path) == first        # read back, not made again
    other = rubric.path.parent / "other"
    other.mkdir()
    (other / "rubric.yaml").write_text(rubric.path.read_text())
    assert keys.load_or_create(other / "rubric.yaml") != first


def test_a_key_readable_by_others_is_made_private_before_use(rubric):
    """Unpacked from a zip or copied with the default umask, a key would be readable by a
    sandbox's user: the grader makes it its owner's alone when it reads it."""
    path = rubric.path.parent / keys.KEY_NAME
    path.write_text("cd" * 32 + "\n")
    path.chmod(0o644)
    assert keys.load_or_create(rubric.path) == bytes.fromhex("cd" * 32)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_key_file_can_live_elsewhere(rubric, tmp_path, monkeypatch):
    elsewhere = tmp_path / "secrets" / "course.key"
    monkeypatch.setenv(keys.KEY_VARIABLE, str(elsewhere))
    key = keys.load_or_create(rubric.path)
    assert elsewhere.read_text().strip() == key.hex()
    assert not (rubric.path.parent / keys.KEY_NAME).exists()


@pytest.mark.parametrize("content", ["", "not hex at all\n", "abcd\n", "x" * 10_000])
def test_a_broken_key_is_a_one_line_error_naming_the_file(rubric, content):
    path = rubric.path.parent / keys.KEY_NAME
    path.write_text(content)
    with pytest.raises(UngradableError) as info:
        keys.load_or_create(rubric.path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "grading key" in message


def test_public_tasks_need_no_key_and_do_not_depend_on_it(rubric):
    public = plan(rubric, ("public",))
    assert not (rubric.path.parent / keys.KEY_NAME).exists()    # a student's self-check
    assert all(t.seed == child_seed(rubric.public_seed, t.id) for t in public)
    keys.load_or_create(rubric.path)
    again = {t.id: t for t in plan(rubric, ("public", "hidden"))}
    for t in public:
        assert again[t.id].seed == t.seed
        assert all(np.array_equal(again[t.id].inputs[k], v) for k, v in t.inputs.items())


def test_hidden_inputs_and_seeds_change_with_the_key(rubric):
    before = {t.id: t for t in plan(rubric, ("hidden",))}
    (rubric.path.parent / keys.KEY_NAME).unlink()
    after = {t.id: t for t in plan(rubric, ("hidden",))}
    assert before.keys() == after.keys() and before
    assert all(before[i].seed != after[i].seed for i in before)
    changed = [i for i in before if before[i].inputs and not all(
        np.array_equal(before[i].inputs[k], after[i].inputs[k]) for k in before[i].inputs)]
    generated = {i for i in before if before[i].inputs and i != "model-hidden"}
    assert len(generated) >= 5 and generated <= set(changed)


def _old_child_seed(seed: int, task_id: str) -> int:
    """How a child's seed was derived before the key: sha256 of the rubric's seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:4], "big") \
        & 0x7FFFFFFF


def test_a_child_cannot_brute_force_the_hidden_seed_from_what_it_is_given(rubric):
    """The attack that worked: try every rubric seed near the real one against a hidden task's
    seed and inputs. With the key neither matches; without it, both would."""
    rubric = dataclasses.replace(rubric, seed=4242)
    task = next(t for t in plan(rubric, ("hidden",)) if t.id == "Q4-hidden")
    probe = PROBES[task.item.probe]
    candidates = range(4000, 4500)
    # the old derivation gives the seed away, so the search below has the power to find it
    assert [s for s in candidates if _old_child_seed(s, task.id) == _old_child_seed(4242, task.id)] \
        == [4242]
    assert not [s for s in candidates if child_seed(s, task.id) == task.seed
                or _old_child_seed(s, task.id) == task.seed]
    for s in candidates:
        guess, _ = probe.make_inputs(task.item, s, task.params)
        assert not np.array_equal(guess["X"], task.inputs["X"]), s


def test_the_key_is_not_in_what_a_child_is_given(rubric):
    key = keys.load_or_create(rubric.path)
    for t in plan(rubric, ("public", "hidden")):
        blobs = [np.ascontiguousarray(v).tobytes() for v in t.inputs.values()]
        words = [str(t.seed), repr(t.params)]
        assert not any(key in b or key.hex().encode() in b for b in blobs), t.id
        assert not any(key.hex() in w or str(rubric.seed) in w for w in words), t.id


def test_making_the_key_leaves_no_temporary_file(rubric):
    keys.load_or_create(rubric.path)
    assert sorted(os.listdir(rubric.path.parent)) == sorted(["rubric.yaml", keys.KEY_NAME])


def test_a_new_key_means_a_batch_grades_again(rubric):
    """The hidden inputs changed: no row graded under the old key is reused."""
    from grader.batch.state import context_digest
    vis = ("public", "hidden")
    first = context_digest(rubric, vis, "full")
    assert context_digest(rubric, vis, "full") == first
    assert context_digest(rubric, ("public",), "full") == context_digest(rubric, ("public",), "full")
    (rubric.path.parent / keys.KEY_NAME).unlink()
    assert context_digest(rubric, vis, "full") != first
