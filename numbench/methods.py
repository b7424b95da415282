"""The method board: alignment methods ranked across every result that holds them, with
their controls (``numbench methods``, and the *Methods* section of the leaderboard).

Which results count: those the leaderboard admits (:func:`numbench.submissions.collect`:
valid, sealed, summary recomputed, hashes of this checkout), of the current protocol, and
**ranked** ones only — a ``--quick`` run is a smaller budget (its IIA and its controls are
not the protocol's) and mostly a second run of a model that has a ranked one, so mixing
the two would count such a model twice at two budgets. ``quick=True`` scores the
``--quick`` runs *instead* (to look at a method one has only run quickly).

Which methods: the ranked pair (``orthogonal``, ``linear``) always; ``sd_linear`` where a
result holds it (a ``--sweep`` run, or ``--alignments sd_linear``); every extra method a
result holds (``evaluate --alignments``), by name. The ``full`` and ``random`` baselines
are not methods: ``random`` is a control column.

Per result, program and variable (an *entry*), a method's cell is the one the summary
picks: single mode, no control, at the site's ranked k, best on **valid** across sites
(:func:`numbench.scores.best_site`; ties to the earlier site). At that cell's site and k:

* *permuted*: the method's permuted-variable control;
* *random-init*: the method fitted on a freshly initialised model;
* *random subspace*: the ``random`` alignment (a fixed random k-dim subspace, untrained)
  at the same site and k — the protocol fits it only at the ranked k, so matched k;
* *selectivity*: IIA − max(permuted, no-interchange), as the summary gives it;
* *control gap*: IIA − max(random-init, permuted), only where the entry has both controls.

A row gives, per method: *models*, the results holding it; *variables*, its entries; and
the mean of each number over the entries that have it (– where none has).

Ranking rule: mean control gap, highest first (a method with none after every method with
one); ties by mean selectivity, then mean test IIA, both highest first; then by name.
The control gap is the rule because IIA alone rewards an expressive map that swaps
anything (Sutter et al. 2025: a nonlinear map reaches ~100 % IIA on a random network);
only what a method finds in the trained model and not in the controls is evidence. Means
are over the results each method covers: compare methods on the same models (read
*models*, filter with ``--task`` / ``--arch``, or keep only the results that hold every
method with ``--shared``).
"""

from __future__ import annotations

from statistics import mean

from .programs import PROGRAMS
from .protocol import BASELINE_ALIGNMENTS, PROTOCOL_VERSION, RANKED_ALIGNMENTS
from .submissions import Submission

#: the numbers of a row, in column order: (key, column heading)
NUMBERS = (
    ("test_iia", "test IIA"),
    ("selectivity", "selectivity"),
    ("permuted_iia", "permuted"),
    ("random_init_iia", "random-init"),
    ("random_subspace_iia", "random subspace"),
    ("control_gap", "control gap"),
)
#: one row's keys, in order (``rank`` first: 1 = best)
FIELDS = ("rank", "method", "models", "variables", *(key for key, _ in NUMBERS))

RULE = (
    "One row per alignment method over every ranked result of protocol "
    f"{PROTOCOL_VERSION} that holds it (the ranked pair always; `sd_linear` and every "
    "method from `evaluate --alignments` where a result has them). Each number is a mean "
    "over the method's *variables* — every (result, program, variable), at the method's "
    "ranked-k cell on the site best on `valid` — of: test IIA; *selectivity* (IIA less the "
    "larger of the permuted control and the no-interchange baseline); the *permuted* and "
    "*random-init* controls; *random subspace*, the untrained `random` alignment at the same "
    "site and k; and the *control gap*, IIA less the larger of random-init and permuted. "
    "**Ranking rule:** mean control gap, highest first; ties by mean selectivity, then mean "
    "test IIA. A method's "
    "means cover only its *models*: compare like with like (`numbench methods --shared`, "
    "which keeps the results holding every method, or `--task`, `--arch`)."
)


def _find(cells: list[dict], **want) -> dict | None:
    for c in cells:
        if all(c.get(k) == v for k, v in want.items()):
            return c
    return None


def _ranked_k_at(cells: list[dict]) -> dict[str, int]:
    """{site: the ranked k there}, from the cells the protocol marks ranked-k."""
    return {c["site"]: c["k"] for c in cells if c.get("ranked_k") and c["mode"] == "single"
            and c["alignment"] != "full"}


def entry(cells: list[dict], program: str, variable: str, method: str,
          none: float | None, ranked_k_at: dict[str, int]) -> dict | None:
    """One method's entry for a variable (None: it has no ranked-k cell there).

    The cell is the summary's (:func:`numbench.scores.method_entry`), with one widening:
    a cell counts as ranked-k by its k, not only its ``ranked_k`` flag, so the single
    ``sd_linear`` cell a ``--sweep`` run fits (at the ranked k, flagged as a sweep cell)
    is found too."""
    cands = [c for c in cells if c["program"] == program and c["variable"] == variable
             and c["alignment"] == method and c["mode"] == "single" and c["control"] is None
             and (c.get("ranked_k") or ranked_k_at.get(c["site"]) == c["k"])]
    if not cands:
        return None
    best = max(cands, key=lambda c: (c["valid_iia"], -c["site_index"]))
    at = dict(program=program, variable=variable, site=best["site"], k=best["k"], mode="single")
    perm = _find(cells, alignment=method, control="permuted", **at)
    rinit = _find(cells, alignment=method, control="random_init", **at)
    rsub = _find(cells, alignment="random", control=None, **at)
    iia = best["test_iia"]
    perm_iia = perm["test_iia"] if perm else None
    rinit_iia = rinit["test_iia"] if rinit else None
    floor = [v for v in (perm_iia, none) if v is not None]
    return {
        "site": best["site"], "k": best["k"], "test_iia": iia, "permuted_iia": perm_iia,
        "random_init_iia": rinit_iia, "random_subspace_iia": rsub["test_iia"] if rsub else None,
        "no_interchange_iia": none,
        "selectivity": iia - max(floor) if floor else None,
        "control_gap": (iia - max(perm_iia, rinit_iia)
                        if perm_iia is not None and rinit_iia is not None else None),
    }


def methods_of(doc: dict) -> list[str]:
    """The methods a result holds, in order: the ranked pair, ``sd_linear``, the extra
    methods as ``settings.alignments`` lists them, then any other alignment of the cells."""
    held = {c["alignment"] for c in doc["cells"]} - set(BASELINE_ALIGNMENTS)
    extras = [a["name"] for a in doc.get("settings", {}).get("alignments", [])]
    order = [*RANKED_ALIGNMENTS, "sd_linear", *extras, *sorted(held)]
    return [m for i, m in enumerate(order) if m in held and m not in order[:i]]


def result_entries(doc: dict) -> dict[str, list[dict]]:
    """{method: [entry + program, variable]} for one result, methods as :func:`methods_of`."""
    cells = doc["cells"]
    at = _ranked_k_at(cells)
    none = doc.get("no_interchange") or {}
    out: dict[str, list[dict]] = {}
    for method in methods_of(doc):
        rows = []
        for program, spec in PROGRAMS.items():
            for var in spec.variables:
                e = entry(cells, program, var, method,
                          none.get(program, {}).get(var, {}).get("test"), at)
                if e is not None:
                    rows.append({"program": program, "variable": var} | e)
        if rows:
            out[method] = rows
    return out


def select(subs: list[Submission], *, task: str | None = None, arch: str | None = None,
           quick: bool = False) -> list[Submission]:
    """The results the board counts: current protocol, ranked (``quick``: the unranked
    ``--quick`` runs instead), of ``task`` and ``arch`` where given."""
    return [s for s in subs if s.current_protocol and s.ranked != quick
            and (task is None or s.doc["task"]["name"] == task)
            and (arch is None or s.doc["model"]["arch"] == arch)]


def holding_every_method(subs: list[Submission]) -> list[Submission]:
    """Of ``subs``, the results that hold every method any of them holds, so that every
    method's means cover the same models (like with like: ``methods --shared``)."""
    held = [set(methods_of(s.doc)) for s in subs]
    every = set().union(*held)
    return [s for s, h in zip(subs, held) if h == every]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def rank(rows: list[dict]) -> list[dict]:
    """The ranking rule (module docstring), with ``rank`` set 1, 2, …"""
    neg = lambda x: float("inf") if x is None else -x
    key = lambda r: (r["control_gap"] is None, neg(r["control_gap"]), neg(r["selectivity"]),
                     neg(r["test_iia"]), r["method"])
    return [dict(r, rank=i) for i, r in enumerate(sorted(rows, key=key), 1)]


def method_rows(subs: list[Submission]) -> list[dict]:
    """One row per method over ``subs`` (as given: filter with :func:`select`), ranked;
    each row's keys are :data:`FIELDS`."""
    per_method: dict[str, list[dict]] = {}
    models: dict[str, int] = {}
    for sub in subs:
        for method, entries in result_entries(sub.doc).items():
            per_method.setdefault(method, []).extend(entries)
            models[method] = models.get(method, 0) + 1
    rows = [{"rank": None, "method": m, "models": models[m], "variables": len(es)}
            | {key: _mean([e[key] for e in es]) for key, _ in NUMBERS}
            for m, es in per_method.items()]
    return rank(rows)


def board_rows(subs: list[Submission]) -> list[dict]:
    """The rows the leaderboard shows: every ranked current-protocol result."""
    return method_rows(select(subs))


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def display_rows(rows: list[dict]) -> list[dict[str, str]]:
    """Formatted strings, one column per board column (not yet escaped: each output
    escapes them for its own format)."""
    return [{"#": str(r["rank"]), "method": str(r["method"]), "models": str(r["models"]),
             "variables": str(r["variables"])} | {head: _fmt(r[key]) for key, head in NUMBERS}
            for r in rows]
