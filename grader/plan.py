"""Planning a grade: one task per item and visibility, with its inputs and its seed.

Public inputs and seeds come from the rubric's ``public_seed`` alone, so that a
student's self-check computes exactly what grading does. Hidden ones come
from an HMAC under the grading key (``keys.py``) and the rubric's ``seed``:
nothing a child sees lets it recover either, or predict another input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import keys
from .probes import PROBES
from .rubric import Item, Rubric


@dataclass(frozen=True)
class Task:
    id: str                 # "<item>-<visibility>", also the output file name
    item: Item
    visibility: str
    params: dict
    inputs: dict            # arrays the child receives
    secret: dict            # arrays the parent keeps (the model's test labels)
    seed: int = 0           # the child's seed: derived, never the rubric's own


def plan(rubric: Rubric, visibilities: tuple[str, ...]) -> list[Task]:
    """The tasks of ``rubric`` for ``visibilities``: each item's probe declares its inputs."""
    tasks = []
    key = None
    for item in rubric.items:
        for vis in item.visibilities(visibilities):
            params = item.params[vis]
            task_id = f"{item.id}-{vis}"
            if vis == "public":
                input_seed, seed = rubric.public_seed, child_seed(rubric.public_seed, task_id)
            else:
                key = key or keys.load_or_create(rubric.path)
                input_seed = keys.derive(key, "inputs", rubric.seed, item.id)
                seed = keys.derive(key, "child", rubric.seed, task_id) & 0x7FFFFFFF
            inputs, secret = PROBES[item.probe].make_inputs(item, input_seed, params)
            tasks.append(Task(task_id, item, vis, params, inputs, secret, seed))
    return tasks


def child_seed(seed: int, task_id: str) -> int:
    """The seed a child gets for a public task: derived from the public seed, which is no
    secret (hidden tasks' seeds come from the grading key instead, see :func:`plan`)."""
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def planned_seed(task: Task) -> int:
    """The child's seed for a task, as plan() derived it from the rubric's seed."""
    return task.seed

