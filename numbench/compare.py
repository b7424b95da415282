"""Alignment methods side by side: one row per (model, task, program, variable), one column
group per alignment function, with the controls of those that have them.

The columns are the protocol's kinds (``KNOWN``, always shown, NaN where a result has
none), then every other method the results' cells hold (a user's or a built-in extra
such as ``pca``, evaluated with ``--alignments``), by name. Each method with control
cells (the ranked pair, the extras) gets its permuted, selectivity and random-init columns.

Which cell fills a column: among the cells that pass the filters (single mode unless asked
otherwise; the ranked k unless ``k`` is given — ``full`` is always k = d), the one with the
best **valid** IIA across sites, as the leaderboard picks sites (PROTOCOL §7); its test IIA
is shown. The permuted-variable and random-init controls are those at the same site and k;
``no-interchange`` is what the plain model scores on the counterfactual inputs (one value
per variable, whatever the alignment), and selectivity is IIA − max(permuted,
no-interchange) (IIA − permuted for a result that has no no-interchange baseline).
"""

from __future__ import annotations

import pandas as pd

from .protocol import BASELINE_ALIGNMENTS, RANKED_ALIGNMENTS
from .submissions import Submission

#: the protocol's own kinds, in this order, always shown
KNOWN = ("orthogonal", "linear", "sd_linear", *BASELINE_ALIGNMENTS)
ROW = ["model", "task", "program", "variable"]
CELL = ["model", "task", "program", "variable", "alignment", "k", "site", "mode"]


def cells_frame(subs: list[Submission]) -> pd.DataFrame:
    """Every cell of every result, with its model, task and architecture."""
    rows = []
    for sub in subs:
        meta = {"model": sub.name, "task": sub.doc["task"]["name"], "arch": sub.doc["model"]["arch"]}
        for c in sub.doc["cells"]:
            rows.append(meta | {k: c.get(k) for k in (
                "program", "variable", "alignment", "k", "site", "site_index", "mode", "control",
                "valid_iia", "test_iia")} | {"ranked_k": bool(c.get("ranked_k", False))})
    return pd.DataFrame(rows, columns=["model", "task", "arch", "program", "variable", "alignment",
                                       "k", "site", "site_index", "mode", "control", "valid_iia",
                                       "test_iia", "ranked_k"])


def compare_frame(subs: list[Submission], *, task: str | None = None, arch: str | None = None,
                  k: int | None = None, site: str | None = None, mode: str = "single") -> pd.DataFrame:
    """The comparison table (numbers, NaN where a result has no such cell)."""
    df = cells_frame(subs)
    for col, want in (("task", task), ("arch", arch), ("site", site), ("mode", mode)):
        if want is not None:
            df = df[df[col] == want]
    full = df["alignment"] == "full"
    df = df[full | ((df["k"] == k) if k is not None else df["ranked_k"])]
    main = df[df["control"].isna()].sort_values(["valid_iia", "site_index"], ascending=[False, True])
    best = main.groupby(ROW + ["alignment"], sort=False).head(1)
    table = best.pivot_table(index=ROW, columns="alignment", values="test_iia", aggfunc="first")
    controls = df[df["control"].notna()]
    joined = best.merge(controls, on=CELL, suffixes=("", "_c"))
    for control, label in (("permuted", "permuted"), ("random_init", "random-init")):
        part = joined[joined["control_c"] == control]
        wide = part.pivot_table(index=ROW, columns="alignment", values="test_iia_c", aggfunc="first")
        for align in wide.columns:
            table[f"{align} {label}"] = wide[align]
    none = pd.DataFrame(
        [{"model": sub.name, "task": sub.doc["task"]["name"], "program": program,
          "variable": var, "no-interchange": v.get("test")}
         for sub in subs for program, per in (sub.doc.get("no_interchange") or {}).items()
         for var, v in per.items()], columns=ROW + ["no-interchange"]).set_index(ROW)
    table = table.join(none, how="left") if len(table) else table.assign(**{"no-interchange": []})
    floor = table["no-interchange"].astype(float)
    columns = ["no-interchange"]
    others = sorted(set(df["alignment"].dropna()) - set(KNOWN))
    controlled = set(RANKED_ALIGNMENTS) | set(controls["alignment"])
    for align in (*KNOWN, *others):
        if align not in table.columns:
            table[align] = float("nan")
        columns.append(align)
        if align in controlled:
            for label in ("permuted", "random-init"):
                if f"{align} {label}" not in table.columns:
                    table[f"{align} {label}"] = float("nan")
            table[f"{align} selectivity"] = table[align] - pd.concat(
                [table[f"{align} permuted"], floor], axis=1).max(axis=1)
            columns += [f"{align} permuted", f"{align} selectivity", f"{align} random-init"]
    return table[columns].reset_index().sort_values(ROW, kind="stable").reset_index(drop=True)
