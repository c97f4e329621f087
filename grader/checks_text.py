"""The free-text check kind (Q11): an answer to the open question."""

from __future__ import annotations

import re

from .checks_base import Context, Verdict, check, one_of

MAX_ANSWER_CHARS = 20_000
FREE_TEXT_MODES = ("completion", "manual")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _normalised(text: str) -> str:
    """Lower case, hyphens and underscores as spaces, one space between words."""
    return " " + " ".join(re.sub(r"[-_/]+", " ", text.lower()).split()) + " "


def improvement_terms(text: str, terms: dict) -> list[str]:
    """The names of the rubric's ``terms`` the text mentions (any of a term's spellings,
    matched at the start of a word: "regulari" finds regularization and regularisation)."""
    haystack = _normalised(text)
    found = []
    for name, spellings in terms.items():
        for spelling in spellings:
            if re.search(r"(?<![a-z0-9])" + re.escape(_normalised(spelling).strip()), haystack):
                found.append(str(name))
                break
    return found


def _free_text_spec(spec: dict):
    """The mode is one of FREE_TEXT_MODES; terms map a name to its spellings."""
    if spec.get("mode") not in FREE_TEXT_MODES:
        yield "mode", one_of(spec.get("mode"), FREE_TEXT_MODES)
    terms = spec.get("terms")
    if isinstance(terms, dict):
        if not terms:
            yield "terms", "expected at least one term"
        for name, spellings in terms.items():
            if not isinstance(spellings, list) or not spellings or not all(
                    isinstance(s, str) and s.strip() for s in spellings):
                yield f"terms.{name}", ("expected a non-empty list of non-empty strings "
                                        "(the term's spellings)")


@check("free_text", required={"min_words": int, "mode": str},
       optional={"min_distinct_words": int, "min_terms": int, "terms": dict},
       probes=("improvements",), validate=_free_text_spec)
def free_text(ctx: Context) -> Verdict:
    """An answer to the open question: enough words, enough different words, and at
    least ``min_terms`` of the rubric's improvement ``terms``; or left to the
    instructor (``mode: manual``)."""
    if ctx.got.meta.get("text_type") != "str":
        return Verdict(False, f"IMPROVEMENTS is a {ctx.got.meta.get('text_type')}, not a string",
                       "write your answer as a string: IMPROVEMENTS = \"...\"")
    text = str(ctx.got.meta.get("text", ""))[:MAX_ANSWER_CHARS]
    words = _WORD.findall(text.lower())
    distinct = len(set(words))
    needs = ("an answer names at least {terms} concrete changes to this network or its "
             "training (for example the initialization, the learning rate, more epochs, the "
             "batch size, regularization or dropout, a deeper or wider network, convolutional "
             "layers, data augmentation) and says why each would help, in a few sentences "
             "(at least {words} words)")
    min_terms = int(ctx.spec.get("min_terms", 0))
    hint = needs.format(terms=max(min_terms, 1), words=ctx.spec["min_words"])
    if len(words) < ctx.spec["min_words"]:
        return Verdict(False, f"the answer has {len(words)} words; at least "
                              f"{ctx.spec['min_words']} are expected", hint,
                       unanswered=not words)
    if ctx.spec["mode"] == "manual":
        return Verdict(False, f"{len(words)} words, left for the instructor to grade", pending=True)
    min_distinct = int(ctx.spec.get("min_distinct_words", 0))
    if distinct < min_distinct:
        return Verdict(False, f"the answer repeats itself: {len(words)} words but only "
                              f"{distinct} different ones (at least {min_distinct} expected)",
                       hint)
    found = improvement_terms(text, ctx.spec.get("terms") or {})
    if len(found) < min_terms:
        named = f"names only {', '.join(found)}" if found else "names no improvement"
        return Verdict(False, f"the answer {named}; at least {min_terms} are expected", hint)
    about = f", about {', '.join(found)}" if found else ""
    return Verdict(True, f"an answer of {len(words)} words{about} (completion credit)")

