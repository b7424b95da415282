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


def summarize(cells: list[dict], programs: dict[str, tuple[str, ...]],
              no_interchange: dict | None = None) -> dict:
    """Per program and variable: each ranked alignment at its best site, with controls;
    alignment score per program; symbol score and the program that earns it.

    ``no_interchange[program][variable]["test"]``: what the plain model scores on the
    counterfactual inputs (no interchange at all). Selectivity is the IIA less the larger
    of it and the permuted control: neither is evidence of an interchanged variable."""
    out: dict = {"programs": {}}
    for program, variables in programs.items():
        per_var, scores = {}, []
        for var in variables:
            per_align = {}
            for align in RANKED_ALIGNMENTS:
                best = best_site(cells, program, var, align)
                if best is None:
                    continue
                at = dict(program=program, variable=var, site=best["site"], mode="single")
                perm = _find(cells, alignment=align, k=best["k"], control="permuted", **at)
                rand = _find(cells, alignment=align, k=best["k"], control="random_init", **at)
                full = _find(cells, alignment="full", control=None, **at)
                rnd = _find(cells, alignment="random", control=None, **at)
                none = (no_interchange or {}).get(program, {}).get(var, {}).get("test")
                floor = [v for v in (perm["test_iia"] if perm else None, none) if v is not None]
                entry = {
                    "site": best["site"], "k": best["k"], "valid_iia": best["valid_iia"],
                    "test_iia": best["test_iia"],
                    "permuted_iia": perm["test_iia"] if perm else None,
                    "no_interchange_iia": none,
                    "selectivity": best["test_iia"] - max(floor) if floor else None,
                    "random_init_iia": rand["test_iia"] if rand else None,
                    "full_iia": full["test_iia"] if full else None,
                    "random_subspace_iia": rnd["test_iia"] if rnd else None,
                }
                per_align[align] = entry
                scores.append(best["test_iia"])
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
    return out


def result_summary(doc: dict) -> dict:
    """The ``summary`` a result's cells and no-interchange baselines give: what ``evaluate``
    stores (every program, ``summarize``), recomputed so a reader need not trust the file."""
    programs = {name: program.variables for name, program in PROGRAMS.items()}
    return summarize(doc["cells"], programs, doc.get("no_interchange"))
