"""Check kinds on the training loop (Q9), evaluate (Q10) and the whole pipeline (model)."""

from __future__ import annotations

import math
import re

import numpy as np

from .checks_base import Context, Verdict, check
from .diagnoses import close
from .inputs import linear_cost, window_costs
from .probes import model_predictions

# ------------------------------------------------------------ the training loop

@check("batches", probes=("train",))
def batches(ctx: Context) -> Verdict:
    recorded = ctx.got.meta.get("batch_sizes", [])
    sizes = [s for s in recorded if isinstance(s, int)] if isinstance(recorded, list) else []
    steps, batch = int(ctx.params["num_steps"]), int(ctx.params["batch_size"])
    ran = ctx.got.meta.get("steps_run")
    if len(sizes) == steps and all(s == batch for s in sizes) and ran == steps:
        # The grader's training step adds up the cost of what it was fed: each step's batch.
        served, _ = _served_costs(ctx)
        fed = ctx.got.array("fed_total")
        if served is not None and fed is not None and fed.size == 1:
            want = float(np.sum(served[:steps]))
            if close(fed, want, rtol=1e-4, atol=1e-4 * float(np.sum(np.abs(served[:steps])))):
                return Verdict(True, f"{steps} steps, each on a fresh batch of {batch}")
        return Verdict(False, f"{steps} batches of {batch} were drawn and the training step ran "
                              f"{steps} times, but not on the batch drawn at each step",
                       "feed each step's batch to the training step: sess.run(train_step, "
                       "feed_dict={X: images, Y: labels}) with the images and labels that "
                       "step drew")
    message = (f"{steps} steps called next_batch {len(sizes)} time(s) with sizes "
               f"{sorted(set(sizes)) or 'none'} and ran the training step {ran} time(s)")
    if not sizes and _sliced(ctx) is not None:
        return Verdict(False, f"train() never called mnist.train.next_batch: its {steps} steps "
                              "took their batches from mnist.train.images and "
                              "mnist.train.labels directly (slicing the arrays yourself)",
                       "draw each step's batch with mnist.train.next_batch(batch_size) inside "
                       "the loop: it shuffles the examples afresh every epoch, which slices in "
                       "a fixed order do not")
    if not sizes:
        hint = ("train() never drew a batch: call mnist.train.next_batch(batch_size) inside "
                "the loop and feed that batch to the training step")
    elif len(sizes) == 1 and steps > 1:
        hint = ("every step trained on the same batch: next_batch was called once, outside "
                "the loop; call mnist.train.next_batch(batch_size) inside the loop, so that "
                "each step sees different examples")
    elif sizes and all(s != batch for s in sizes):
        hint = f"next_batch was called with {sizes[0]}, not the batch_size argument ({batch})"
    elif len(sizes) == 2 * steps:
        hint = ("next_batch was called twice per step: fetch one batch per step and use it "
                "for the training step and the cost alike")
    elif ran == len(sizes) < steps:
        hint = (f"{steps - len(sizes)} of the {steps} iterations neither drew a batch nor "
                "trained: run the training step on a fresh batch at every step, and measure "
                "on other data after the loop (evaluate does that)")
    elif len(sizes) != steps:
        hint = "run exactly num_steps steps: for i in range(num_steps)"
    else:
        hint = ("run the training step in every iteration: "
                "sess.run([train_step, cost], feed_dict=...)")
    return Verdict(False, message, hint)


@check("returned_costs", probes=("train",))
def returned_costs(ctx: Context) -> Verdict:
    info = ctx.got.meta.get("returned", {})
    values = ctx.got.array("returned")
    steps = int(ctx.params["num_steps"])
    if values is None:
        return Verdict(False, f"train() returned {info.get('type', 'nothing')}, not a list",
                       "collect the cost of every step in a list and return it")
    types = set(info.get("element_types", []))
    bad_types = types - {"float", "float32", "float64", "float16"}
    if bad_types:
        return Verdict(False, f"the list holds {', '.join(sorted(bad_types))} values",
                       "append the number sess.run returns for the cost (a float), "
                       "not the tensor itself")
    if len(values) != steps:
        return Verdict(False, f"train() returned {len(values)} costs for {steps} steps",
                       "append exactly one cost per step")
    served, problem = _served_costs(ctx)
    sliced = _sliced(ctx)
    if served is None and sliced is not None:
        # how the batches were drawn is the `batches` check's business: only the costs here
        if _each_among(values, sliced):
            return Verdict(True, f"{steps} costs, one per step, each the cost of a batch of "
                                 f"{ctx.params['batch_size']} training examples")
        return Verdict(False, "the returned costs are not the costs of batches of "
                              f"{ctx.params['batch_size']} training examples",
                       "return the cost sess.run gave for each step's batch, in order")
    if served is None:
        return Verdict(False, f"{problem}, so the costs cannot be those of the batches",
                       "draw each step's batch with mnist.train.next_batch(batch_size) and "
                       "fetch its cost in the same sess.run as the training step")
    if not _costs_of_served_batches(values, served):
        return Verdict(False, "the returned costs are not the costs of the batches fed at each step",
                       "fetch the cost in the same sess.run as the step, on that step's batch")
    # how the batches were drawn is the `batches` check's business, not this one's
    return Verdict(True, f"{steps} costs, one per step, each the cost of a batch fed")


def _sliced(ctx: Context) -> np.ndarray | None:
    """The costs of every batch_size run of the training examples, sorted, when train()
    drew no batch from next_batch but read the arrays (slicing them itself); else None."""
    sizes = ctx.got.meta.get("batch_sizes")
    if sizes or ctx.got.meta.get("arrays_read") is not True or "images" not in ctx.inputs:
        return None
    return np.sort(window_costs(ctx.inputs, int(ctx.params["batch_size"])))


def _each_among(values: np.ndarray, candidates: np.ndarray) -> bool:
    """Each value is within float32 rounding of one of the sorted ``candidates``."""
    if candidates.size == 0 or values.size == 0 or not np.isfinite(values).all():
        return False
    tolerance = 1e-3 * np.abs(values) + 1e-4
    low = np.searchsorted(candidates, values - tolerance, side="left")
    nearest = candidates[np.minimum(low, len(candidates) - 1)]
    return bool(np.all((low < len(candidates)) & (nearest <= values + tolerance)))


def _costs_of_served_batches(values: np.ndarray, served: np.ndarray) -> bool:
    """Each returned cost is the cost of a batch next_batch served, in the order served:
    step i's batch comes after step i-1's (the same one only if a single batch was drawn)."""
    if len(served) == 1:
        return close(values, np.full(len(values), served[0]), rtol=1e-3, atol=1e-4)
    position = 0
    for value in values:
        while position < len(served) and not close(value, served[position], rtol=1e-3, atol=1e-4):
            position += 1
        if position == len(served):
            return False
        position += 1
    return True


# What the printed check reads of the child's output, at most (the text is the
# child's: never trust its size).
MAX_PRINTED_CHARS = 20_000
MAX_PRINTED_LINES = 2_000
MAX_NUMBERS_PER_LINE = 32
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def served_cost_limit(num_steps: int) -> int:
    """The most batches train() may draw: the probe stops it beyond (3 per step, plus 10)."""
    return 3 * num_steps + 10


def _served_costs(ctx: Context) -> tuple[np.ndarray | None, str]:
    """The costs of the batches served, or None and why they are unusable.

    The child reports only the sizes it asked next_batch for; the parent
    replays the grader's ``mnist.train`` (the shared loader's DataSet with
    the child's seed) and computes each batch's cost itself, so nothing the
    child claims about a batch is taken on trust."""
    sizes = ctx.got.meta.get("batch_sizes", [])
    steps = int(ctx.params["num_steps"])
    images, labels = ctx.inputs.get("images"), ctx.inputs.get("labels")
    if images is None or labels is None:
        return None, "the grader has no batches to replay"
    if not isinstance(sizes, list) or not sizes:
        return None, "no mini-batch was drawn"
    if len(sizes) > served_cost_limit(steps):
        return None, (f"the record of the batches served is malformed ({len(sizes)} batches "
                      f"for {steps} steps; at most {served_cost_limit(steps)} can be served)")
    largest = 10 * len(images)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= largest
               for n in sizes):
        return None, "the record of the batches served is malformed"
    return replay_batch_costs(ctx.inputs, ctx.seed, sizes), ""


def replay_batch_costs(inputs: dict, seed: int, sizes: list[int]) -> np.ndarray:
    """The cost of each batch the Q9 probe's ``mnist.train`` served for ``sizes``, in order."""
    from .data import load_loader
    data = load_loader().DataSet(inputs["images"], inputs["labels"], seed=seed)
    return np.asarray([linear_cost(inputs, *data.next_batch(size)) for size in sizes],
                      dtype=np.float64)


def _token_tolerance(token: str, value: float) -> float:
    """Half a unit in the last printed digit, plus float32 rounding."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    try:
        scale = 10.0 ** (int(exponent or 0) - decimals)
    except OverflowError:
        scale = math.inf
    return 0.5 * scale + 1e-4 * abs(value) + 1e-7


def _cost_candidates(served: np.ndarray, every: int) -> np.ndarray:
    """What a progress line may show as "the cost", sorted: each batch's cost, the mean
    over the last print_every batches, and the running mean since the start."""
    served = served[np.isfinite(served)]
    if served.size == 0:
        return served
    sums = np.concatenate([[0.0], np.cumsum(served)])
    ends = np.arange(1, len(served) + 1)
    running = sums[1:] / ends
    window = min(max(every, 1), len(served))
    recent = (sums[window:] - sums[:-window]) / window
    return np.sort(np.concatenate([served, running, recent]))


def _progress_lines(text: str, steps: int, candidates: np.ndarray) -> tuple[int, int, int]:
    """(progress records, lines with only an iteration, lines with only a cost).

    A progress record is a line that shows an iteration number (an integer
    from 0 to num_steps, whatever its padding or label) and a cost (a number
    within its printed precision of a served batch's cost), or a line with the
    iteration followed by a line with the cost.  Matching is one binary search
    per number: O((n + m) log m)."""
    lines = [line for line in text[:MAX_PRINTED_CHARS].splitlines() if line.strip()]
    lines = lines[:MAX_PRINTED_LINES]
    tokens = [_NUMBER.findall(line)[:MAX_NUMBERS_PER_LINE] for line in lines]
    floats = [(i, t, float(t)) for i, line_tokens in enumerate(tokens) for t in line_tokens
              if any(c in t for c in ".eE")]
    has_cost = np.zeros(len(lines), dtype=bool)
    if floats and candidates.size:
        values = np.array([v for _, _, v in floats])
        tolerance = np.array([_token_tolerance(t, v) for _, t, v in floats])
        finite = np.isfinite(values) & np.isfinite(tolerance)
        low = np.searchsorted(candidates, np.where(finite, values - tolerance, 0.0), side="left")
        found = low < len(candidates)
        nearest = candidates[np.minimum(low, len(candidates) - 1)]
        hit = finite & found & (nearest <= values + tolerance)
        for (i, _, _), ok in zip(floats, hit):
            has_cost[i] |= bool(ok)
    has_iteration = np.array([any(not any(c in t for c in ".eE") and 0 <= int(t) <= steps
                                  for t in line_tokens if len(t.lstrip("+-")) <= 9)
                              for line_tokens in tokens], dtype=bool)
    records = i = 0
    while i < len(lines):
        if has_iteration[i] and has_cost[i]:
            records += 1
        elif has_iteration[i] and i + 1 < len(lines) and has_cost[i + 1] \
                and not has_iteration[i + 1]:
            records += 1
            i += 1
        i += 1
    only_iteration = int(np.sum(has_iteration & ~has_cost))
    only_cost = int(np.sum(has_cost & ~has_iteration))
    return records, only_iteration, only_cost


@check("printed", probes=("train",))
def printed(ctx: Context) -> Verdict:
    """train() prints its progress: the iteration number and the cost, about once every
    print_every steps, in any format (0- or 1-based, padded, labelled or not)."""
    text = str(ctx.got.meta.get("printed", ""))[:MAX_PRINTED_CHARS]
    steps, every = int(ctx.params["num_steps"]), int(ctx.params["print_every"])
    if not text.strip():
        return Verdict(False, "train() printed nothing",
                       "print the iteration number and the cost every print_every steps, so "
                       "that you can watch the training progress")
    served, problem = _served_costs(ctx)
    sliced = _sliced(ctx)  # the loop sliced the arrays itself: any batch's cost may show
    if served is None and sliced is None:
        return Verdict(False, f"the printed cost cannot be checked: {problem}",
                       "draw each step's batch with mnist.train.next_batch(batch_size)")
    candidates = sliced if served is None else _cost_candidates(served, every)
    records, only_iteration, only_cost = _progress_lines(text, steps, candidates)
    expected = math.ceil(steps / max(every, 1))
    low, high = max(1, expected - 1), expected + 2
    if low <= records <= high:
        return Verdict(True, f"{records} progress lines with the iteration and the cost")
    first = next((line for line in text.splitlines() if line.strip()), "")[:60]
    if records == 0:
        if only_iteration and not only_cost:
            return Verdict(False, f"the printed lines show an iteration number but no cost of a "
                                  f"batch fed: {first!r}",
                           "print the cost sess.run returned for the step's batch next to the "
                           "iteration number, e.g. print(f'Iteration {i}: cost = {c:.4f}')")
        if only_cost:
            return Verdict(False, f"the printed lines show the cost but not the iteration "
                                  f"number: {first!r}",
                           "print the iteration number with the cost, e.g. "
                           "print(f'Iteration {i}: cost = {c:.4f}')")
        return Verdict(False, f"no printed line shows the iteration and the cost: {first!r}",
                       "print both every print_every steps, e.g. "
                       "print(f'Iteration {i}: cost = {c:.4f}')")
    return Verdict(False, f"{records} progress lines for {steps} steps with print_every={every}; "
                          f"expected about {expected}",
                   "print once every print_every steps (if i % print_every == 0), not at "
                   "every step nor only once")


# ---------------------------------------------------------------- evaluate

@check("returned_pair", probes=("evaluate",))
def returned_pair(ctx: Context) -> Verdict:
    info = ctx.got.meta.get("returned", {})
    values = ctx.got.array("returned")
    if values is None or len(values) != 2:
        count = "" if values is None else f" of {len(values)}"
        return Verdict(False, f"evaluate() returned a {info.get('type', 'nothing')}{count}",
                       "return a pair: (cost_value, accuracy_value)")
    types = set(info.get("element_types", []))
    bad = types - {"float", "float32", "float64"}
    if bad or not np.isfinite(values).all():
        return Verdict(False, f"evaluate() returned {', '.join(sorted(types))} values",
                       "return the numbers sess.run gives, as Python floats")
    return Verdict(True, "evaluate() returns two floats")


# ------------------------------------------------------------------ model

@check("accuracy_threshold", required={"min_accuracy": (int, float)}, probes=("model",))
def accuracy_threshold(ctx: Context) -> Verdict:
    # The grader predicts, from the trained parameters, on test images the child never saw.
    predictions, why = model_predictions(ctx.got.arrays, ctx.secret["test_images"])
    labels = ctx.secret["test_labels"]
    threshold = float(ctx.spec["min_accuracy"])
    if predictions is None:
        return Verdict(False, why, "initialize_parameters must return the dict of W1, b1, W2 "
                                   "and b2 that forward_propagation uses and the training updates")
    accuracy = float(np.mean(predictions == labels))
    steps = ctx.params.get("steps")
    if accuracy >= threshold:
        return Verdict(True, f"test accuracy {accuracy:.3f} >= {threshold:.3f} after {steps} steps")
    hint = _one_batch(ctx) or (
        "the network did not learn (chance is 0.10): check the initial weights, the cost, "
        "the training step and the loop" if accuracy < 0.2 else
        "the network learns too slowly: check the initial scale of the weights, the "
        "learning rate and the activation")
    return Verdict(False, f"test accuracy {accuracy:.3f} after {steps} steps; "
                          f"the threshold is {threshold:.3f}", hint)


def _one_batch(ctx: Context) -> str | None:
    """The cause when train() drew at most one batch for all its steps (a frozen batch)."""
    drawn, steps = ctx.got.meta.get("batches_drawn"), ctx.params.get("steps")
    if not isinstance(drawn, int) or not isinstance(steps, int) or drawn > 1 or steps <= 1 \
            or ctx.got.meta.get("arrays_read") is True:
        return None
    if drawn == 0:
        return (f"train() drew no batch in {steps} steps: call "
                "mnist.train.next_batch(batch_size) inside the loop and train on that batch")
    return (f"train() called mnist.train.next_batch once for {steps} steps, so every step "
            "trained on the same batch and the network learned only those examples: call "
            "next_batch inside the loop")
