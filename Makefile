# Everything a student or an instructor needs, in a few commands.
# Each target creates .venv/ and installs the pinned dependencies first
# when they are missing or requirements*.txt changed (requirements.txt: what
# grading needs; the instructor's targets below add what only they need).
# The student bundle gets this file without the "instructor" blocks.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make grade path/to/file.ipynb`: a goal that is an existing .py or .ipynb file is
# the submission to grade (and does nothing of its own).
GOAL_FILES := $(wildcard $(filter %.py %.ipynb,$(MAKECMDGOALS)))
SUBMISSION ?= $(or $(firstword $(GOAL_FILES)),starter/tensorflow_tutorial.py)
Q ?=
RUN ?= $(if $(wildcard reference/tensorflow_tutorial.py),reference/tensorflow_tutorial.py,starter/tensorflow_tutorial.py)
ARGS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 3
export TF_ENABLE_ONEDNN_OPTS ?= 0

.PHONY: help venv grade watch run clean

help:
	@echo "make grade [FILE] [Q=Q5]       grade a submission, or Q5 only (default: $(SUBMISSION))"
	@echo "make watch [SUBMISSION=path]   grade it again each time it is saved (Ctrl-C to stop)"
	@echo "make run [RUN=path] [ARGS=..]  run the tutorial end to end (default: $(RUN))"
# instructor:begin
	@echo "make test                      run the test suite (make test-fast: the tier without TensorFlow)"
	@echo "make bench [ARGS=--only phases] time the grader against a bare TensorFlow import"
	@echo "make calibrate [ARGS=..]       suggest the model item's accuracy threshold (ARGS='--steps"
	@echo "                               300,600,1500 --corpus tests/corpus': and its step count)"
	@echo "make student-bundle            build dist/student.zip (no reference, public checks)"
	@echo "make gradescope                build dist/gradescope_autograder.zip"
	@echo "make batch SRC=path OUT=dir    grade a class (folder or .zip) into a gradebook [ARGS=--force ..]"
	@echo "                               on Ray: ARGS=--ray (a local instance) or ARGS='--ray auto' (a cluster)"
# instructor:end

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	@touch $@

# `check` exits 1 when points were lost: that is a grade, not a failure of make.
# Only 2 (nothing could be graded) fails the target.
grade: $(STAMP)
	@$(PY) -m grader check "$(SUBMISSION)" $(if $(Q),--only "$(Q)") $(ARGS) || test $$? -eq 1

.PHONY: $(GOAL_FILES)
$(GOAL_FILES):
	@:

watch: $(STAMP)
	@$(PY) -m grader watch $(SUBMISSION) $(ARGS)

run: $(STAMP)
	$(PY) $(RUN) $(ARGS)

clean:
	rm -rf $(VENV) .cache dist

# instructor:begin
.PHONY: test test-fast bench calibrate student-bundle gradescope batch

# Ray (requirements-ray.txt: batch --ray, its tests and its benchmark) and a Jupyter
# kernel (the notebook tests) on top of the rest, for test, bench and batch ARGS=--ray only.
RAY_STAMP := $(VENV)/.installed-ray

$(RAY_STAMP): $(STAMP) requirements-ray.txt requirements-notebook.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-ray.txt -r requirements-notebook.txt
	@touch $@

# The test tools (requirements-dev.txt: pytest, pytest-xdist, hypothesis) on top of the
# rest, for test, test-fast and bench only: a student's copy never installs them.
DEV_STAMP := $(VENV)/.installed-dev

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

# The similarity report of a class (requirements-similarity.txt: copydetect), for batch,
# test, test-fast and bench only.
SIM_STAMP := $(VENV)/.installed-similarity

$(SIM_STAMP): $(STAMP) requirements-similarity.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-similarity.txt
	@touch $@

test: $(RAY_STAMP) $(DEV_STAMP) $(SIM_STAMP)
	$(PY) -m pytest -q -n 2 tests

# The tier without TensorFlow: checks, diagnoses, reports, rubric, channel, loader.
test-fast: $(DEV_STAMP) $(SIM_STAMP)
	$(PY) -m pytest -q -m "not tf" tests

bench: $(RAY_STAMP) $(DEV_STAMP) $(SIM_STAMP)
	$(PY) bench/bench.py $(ARGS)

calibrate: $(STAMP)
	$(PY) -m grader calibrate $(ARGS)

student-bundle: $(STAMP)
	$(PY) -m grader bundle student

gradescope: $(STAMP)
	$(PY) -m grader bundle gradescope

batch: $(STAMP) $(SIM_STAMP) $(if $(findstring --ray,$(ARGS)),$(RAY_STAMP))
	@test -n "$(SRC)" && test -n "$(OUT)" || \
		{ echo "usage: make batch SRC=folder-or-zip OUT=folder [ARGS='--jobs N --force']" >&2; exit 2; }
	$(PY) -m grader batch "$(SRC)" --out "$(OUT)" $(ARGS)
# instructor:end
