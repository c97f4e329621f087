"""A synthetic class for the similarity benchmark, built from the corpus's real solutions.

Each student's file takes each of the contract's functions from one of the
real solutions, drawn at random, then changes it the way students' own code
differs: constants of its own, an extra statement or two.  A few students are
planted copies of others.  Each report records a few failed checks drawn from
a pool, so that behaviour is compared too.  Same seed, same class.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "corpus" / "real"


def _functions() -> tuple[dict[str, list[str]], list[str]]:
    """Each top-level function's versions across the real solutions, and their imports."""
    versions: dict[str, list[str]] = {}
    imports: list[str] = []
    for path in sorted(REAL.glob("*.py")):
        code = path.read_text()
        tree = ast.parse(code)
        for node in tree.body:
            text = ast.get_source_segment(code, node) or ""
            if isinstance(node, ast.FunctionDef):
                versions.setdefault(node.name, []).append(text)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and text not in imports:
                imports.append(text)
    return versions, imports


def _own(function: str, rng: random.Random) -> str:
    """A function with changes of a student's own: a constant and a statement."""
    lines = function.splitlines()
    body = [i for i, line in enumerate(lines) if line.startswith("    ") and line.strip()
            and not line.strip().startswith(("return", "\"\"\"", "'", "#", "@"))]
    for _ in range(2):
        if body:
            at = rng.choice(body)
            indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
            lines.insert(at, f"{indent}tmp_{rng.randrange(10**6)} = {rng.randrange(10**6)} "
                             f"* {rng.random():.4f}")
    return "\n".join(lines)


def build(out: Path, students: int, seed: int = 0, copies: int = 20) -> Path:
    """A batch's folder (state.json, submissions/, reports/) of ``students`` students."""
    rng = random.Random(seed)
    versions, imports = _functions()
    (out / "submissions").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    mistakes = [(f"Q{q}", f"q{q}_values", f"value is {v:.4f} (expected 0.5)")
                for q in range(2, 11) for v in (0.1, 0.2, 0.3, 0.4, 0.6, 0.7)]
    names = [f"student{i:05d}" for i in range(students)]
    codes: dict[str, str] = {}
    for name in names:
        parts = list(imports)
        for _, options in sorted(versions.items()):
            parts.append(_own(rng.choice(options), rng))
        codes[name] = "\n\n\n".join(parts) + "\n"
    for i in range(copies):       # planted: a copy of another student
        codes[names[-1 - i]] = codes[names[i]]
    for name in names:
        (out / "submissions" / f"{name}.py").write_text(codes[name])
        failed = rng.sample(mistakes, rng.randrange(0, 4))
        report = {"questions": [{"id": item, "checks": [
            {"name": check, "status": "failed", "visibility": "public", "message": message,
             "hint": "a named mistake"}]} for item, check, message in failed]}
        (out / "reports" / f"{name}.json").write_text(json.dumps(report))
    (out / "state.json").write_text(json.dumps(
        {"students": {name: {"status": "graded"} for name in names}}))
    return out
