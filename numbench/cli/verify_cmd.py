"""``numbench verify``: re-run the evaluation behind a result and compare every number."""

from __future__ import annotations

import click
from rich.markup import escape

from ..verify import slow_replay_note, verify
from . import EXIT_FAILED
from .options import arch_module_option
from .output import print_json, stderr, stdout


@click.command("verify")
@click.argument("result_file", type=click.Path(dir_okay=False))
@click.argument("model_file", type=click.Path(dir_okay=False))
@arch_module_option
@click.option("--json", "as_json", is_flag=True, help="Print the verification as JSON.")
def command(result_file: str, model_file: str, as_json: bool) -> None:
    """Check RESULT_FILE against MODEL_FILE: the model's sha256, then a full re-run of the
    recorded evaluation (same protocol, seed and settings), number by number.

    Exit 0 when everything matches, 1 when anything differs (each mismatch is named).
    The outcome is recorded in verify.json beside the result; the leaderboard's ✓ needs it.

    Example: numbench verify submissions/gru_multi_object_s0/result.json baselines/gru_multi_object_s0.pt
    """
    slow = slow_replay_note(result_file)
    if slow:
        stderr.print(f"[yellow]note[/]: {escape(slow)}", highlight=False)
    with stderr.status("re-running the evaluation…"):
        v = verify(result_file, model_file)
    if as_json:
        print_json(v.record | {"mismatch_list": [vars(m) for m in v.mismatches]})
    elif v.passed:
        stdout.print(f"[green]verified[/]: {escape(result_file)} reproduces exactly from "
                     f"{escape(model_file)}", highlight=False)
    else:
        for m in v.mismatches:
            stdout.print(f"[red]mismatch[/] {escape(str(m))}", highlight=False)
        stdout.print(f"{len(v.mismatches)} mismatch(es): {escape(result_file)} is not verified")
        if v.note:
            stdout.print(f"[yellow]note[/]: {escape(v.note)}", highlight=False)
    if not v.passed:
        raise SystemExit(EXIT_FAILED)
