"""Shared test set-up: the repository root on sys.path, TensorFlow kept quiet.

The pytest processes themselves never import TensorFlow: everything that needs
it runs in a child process, as the grader does.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# One grading key for every rubric the tests copy into temporary folders, so that their
# hidden inputs, and the reference's cached outputs on them, are shared (grader/keys.py).
os.environ.setdefault("GRADER_KEY_FILE", str(ROOT / ".cache" / "tests-grading.key"))


# How end-to-end tests run the grader's command: by default its own `main`, in the
# test process, so that one warm TensorFlow (the grader's zygote) serves every grade
# a pytest-xdist worker runs. TEST_GRADE=process runs `python -m grader` per grade
# instead, as the suite did before the zygote (`make bench --only tests` compares).
IN_PROCESS = os.environ.get("TEST_GRADE", "").strip().lower() != "process"


def grader_main(argv: list[str], tmpdir: Path | None = None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m grader ARGV``, run in this process.

    ``tmpdir``: the grader's temporary files go there (as ``TMPDIR=`` would make
    them), so that a test can see what it left behind. The zygote is not one of
    them: it is started first, in the usual place, and outlives the grade.
    """
    import contextlib
    import io
    import tempfile

    from grader import cli, engine, zygote
    from grader.rubric import load_rubric

    if tmpdir is not None and "--rubric" in argv and zygote.requested_mode() != "fresh" \
            and zygote.possible():
        zygote.for_env(engine._zygote_env(load_rubric(Path(argv[argv.index("--rubric") + 1]))))
    stdout, stderr = io.StringIO(), io.StringIO()
    before = tempfile.tempdir
    if tmpdir is not None:
        tempfile.tempdir = str(tmpdir)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(list(argv))
    finally:
        tempfile.tempdir = before
    return code, stdout.getvalue(), stderr.getvalue()


def at_import(code: str) -> str:
    """``code`` run as the file is imported, all of it.  The grader skips a top-level
    statement that calls anything, as it skips a tutorial run at top level; a class body
    may call what an import bound, here ``exec``, which then runs the rest."""
    return f"import builtins as _b\nclass _AtImport:\n    _ = _b.exec({code!r}, _b.globals())\n"


def tutorial_env(tmp_path: Path) -> dict[str, str]:
    """Offline, no Keras cache, no MNIST_PATH: the tutorial runs on the offline subset."""
    env = {k: v for k, v in os.environ.items() if k != "MNIST_PATH"}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), MNIST_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               TF_ENABLE_ONEDNN_OPTS="0")
    return env


# --------------------------------------------------------------- test tiers
# `make test-fast` runs what is not marked `tf`: checks, diagnoses, renderers, the
# rubric validator, the channel, the loader (no TensorFlow, no sandboxed grade).
# The `tf` tier starts sandboxed children that import TensorFlow, or sandboxes
# that spend seconds of CPU on purpose.
TF_MODULES = {"test_hostile", "test_corpus", "test_distribute", "test_reference", "test_starter",
              "test_cli", "test_sandbox", "test_zygote", "test_zygote_relay", "test_ray"}
TF_TESTS = {
    "test_engine": {"test_a_failing_reference_is_ungradable_not_a_zero",
                    "test_no_value_a_declaration_admits_makes_a_check_raise"},
    "test_batch": {"test_batch_grades_a_class_like_check_and_resumes",
                   "test_batch_over_a_zip_of_student_folders_resumes_and_force_regrades"},
}


def pytest_configure(config):
    config.addinivalue_line("markers", "tf: the end-to-end tier (TensorFlow in a sandbox)")


def pytest_collection_modifyitems(config, items):
    import pytest
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        name = getattr(item, "originalname", item.name)
        if module in TF_MODULES or name in TF_TESTS.get(module, ()):
            item.add_marker(pytest.mark.tf)
