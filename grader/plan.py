"""Planning a grade: one task per item and visibility, with its inputs and its seed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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
    for item in rubric.items:
        for vis in item.visibilities(visibilities):
            params = item.params[vis]
            inputs, secret = PROBES[item.probe].make_inputs(item, rubric.seed_for(vis), params)
            task_id = f"{item.id}-{vis}"
            tasks.append(Task(task_id, item, vis, params, inputs, secret,
                              child_seed(rubric.seed_for(vis), task_id)))
    return tasks


def child_seed(seed: int, task_id: str) -> int:
    """The seed a child gets for one task: derived, so the rubric's seed never enters it."""
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def planned_seed(task: Task) -> int:
    """The child's seed for a task, as plan() derived it from the rubric's seed."""
    return task.seed

