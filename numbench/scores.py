"""From cells to scores (PROTOCOL §7): best site, controls, selectivity, symbol score."""

from __future__ import annotations

from statistics import mean

from .programs import PROGRAMS
from .protocol import RANKED_ALIGNMENTS


def _find(cells: list[dict], **want) -> dict | None:
    for c in cells:
        if all(c.get(k) == v for k, v in want.items()):
            return c
    return None


def best_site(cells: list[dict], program: str, variable: str, alignment: str) -> dict | None:
    """The ranked cell (single mode, ranked k, no control) with the best valid IIA."""
    cands = [c for c in cells if c["program"] == program and c["variable"] == variable
             and c["alignment"] == alignment and c["mode"] == "single" and c["ranked_k"]
             and c["control"] is None]
    return max(cands, key=lambda c: (c["valid_iia"], -c["site_index"])) if cands else None


def method_entry(cells: list[dict], program: str, variable: str, alignment: str,
                 none: float | None) -> dict | None:
    """One alignment's entry for a variable: its cell at the best site on valid, with the
    controls and baselines there (None when it has no such cell). ``none``: the variable's
    no-interchange IIA on test, if known."""
    best = best_site(cells, program, variable, alignment)
    if best is None:
        return None
    at = dict(program=program, variable=variable, site=best["site"], mode="single")
    perm = _find(cells, alignment=alignment, k=best["k"], control="permuted", **at)
    rand = _find(cells, alignment=alignment, k=best["k"], control="random_init", **at)
    full = _find(cells, alignment="full", control=None, **at)
    rnd = _find(cells, alignment="random", control=None, **at)
    floor = [v for v in (perm["test_iia"] if perm else None, none) if v is not None]
    return {
        "site": best["site"], "k": best["k"], "valid_iia": best["valid_iia"],
        "test_iia": best["test_iia"],
        "permuted_iia": perm["test_iia"] if perm else None,
        "no_interchange_iia": none,
        "selectivity": best["test_iia"] - max(floor) if floor else None,
        "random_init_iia": rand["test_iia"] if rand else None,
        "full_iia": full["test_iia"] if full else None,
        "random_subspace_iia": rnd["test_iia"] if rnd else None,
    }


def summarize(cells: list[dict], programs: dict[str, tuple[str, ...]],
              no_interchange: dict | None = None, methods: tuple[str, ...] = ()) -> dict:
    """Per program and variable: each ranked alignment at its best site, with controls;
    alignment score per program; symbol score and the program that earns it.

    ``no_interchange[program][variable]["test"]``: what the plain model scores on the
    counterfactual inputs (no interchange at all). Selectivity is the IIA less the larger
    of it and the permuted control: neither is evidence of an interchanged variable.

    ``methods``: the extra methods evaluated beside the ranked pair (``settings.alignments``).
    Each gets the same entries under ``methods.<method>.<program>.<variable>``, and never
    enters an alignment score or the symbol score (the key is absent when there are none)."""
    none_of = lambda program, var: (no_interchange or {}).get(program, {}).get(var, {}).get("test")
    out: dict = {"programs": {}}
    for program, variables in programs.items():
        per_var, scores = {}, []
        for var in variables:
            per_align = {}
            for align in RANKED_ALIGNMENTS:
                entry = method_entry(cells, program, var, align, none_of(program, var))
                if entry is None:
                    continue
                per_align[align] = entry
                scores.append(entry["test_iia"])
            per_var[var] = per_align
        out["programs"][program] = {
            "variables": per_var,
            "alignment_score": mean(scores) if scores else None,
        }
    scored = {p: v["alignment_score"] for p, v in out["programs"].items()
              if v["alignment_score"] is not None}
    best_program = max(scored, key=lambda p: (scored[p], p == "up_down")) if scored else None
    out["symbol_score"] = scored[best_program] if best_program else None
    out["best_program"] = best_program
    if methods:
        out["methods"] = {
            method: {program: {var: entry for var in variables
                               if (entry := method_entry(cells, program, var, method,
                                                         none_of(program, var))) is not None}
                     for program, variables in programs.items()}
            for method in methods}
    return out


def result_summary(doc: dict) -> dict:
    """The ``summary`` a result's cells and no-interchange baselines give: what ``evaluate``
    stores (every program, ``summarize``), recomputed so a reader need not trust the file."""
    programs = {name: program.variables for name, program in PROGRAMS.items()}
    methods = tuple(a["name"] for a in doc.get("settings", {}).get("alignments", []))
    return summarize(doc["cells"], programs, doc.get("no_interchange"), methods)


def method_entries(summary: dict, program: str, variable: str) -> dict[str, dict]:
    """{alignment: entry} of one variable in a summary: the ranked pair's, then each extra
    method's (``summary.methods``), in the result's order."""
    out = dict(summary["programs"].get(program, {}).get("variables", {}).get(variable, {}))
    for method, per in (summary.get("methods") or {}).items():
        if variable in per.get(program, {}):
            out[method] = per[program][variable]
    return out
