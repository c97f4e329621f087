"""Where the grader finds what it needs: one frozen object, one default instance.

Every path the grade reads (the reference, the shared loader, the shipped
expected values, the cache) is a field of :data:`CONFIG`.  Modules read
``config.CONFIG`` when they need a path, so a test or a tool can swap the
whole configuration (``dataclasses.replace``) without patching globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GRADER_VERSION = "1.0.0"


@dataclass(frozen=True)
class Config:
    project_root: Path
    package_dir: Path           # grader/ (its child's side, inside/, is copied into each sandbox)
    reference: Path             # the reference solution (absent in a student bundle)
    loader: Path                # starter/mnist_loader.py, shared with students and the child
    expected_dir: Path          # precomputed public outputs (student bundle)
    cache_dir: Path             # the reference's outputs, computed once
    version: str = GRADER_VERSION

    @classmethod
    def at(cls, project_root: Path) -> "Config":
        package = Path(__file__).resolve().parent
        return cls(project_root=project_root, package_dir=package,
                   reference=project_root / "reference" / "tensorflow_tutorial.py",
                   loader=project_root / "starter" / "mnist_loader.py",
                   expected_dir=package / "expected",
                   cache_dir=project_root / ".cache" / "expected")


CONFIG = Config.at(Path(__file__).resolve().parent.parent)
