"""``numbench verify``: re-run the evaluation behind a result and compare every number."""

from __future__ import annotations

import click
from rich.markup import escape

from ..protocol import engine_config
from ..verify import slow_replay_note, verify
from . import EXIT_FAILED
from .evaluate_cmd import evaluation_progress
from .options import alignment_module_option, arch_module_option
from .output import print_json, stderr, stdout


@click.command("verify")
@click.argument("result_file", type=click.Path(dir_okay=False))
@click.argument("model_file", type=click.Path(dir_okay=False))
@arch_module_option
@alignment_module_option
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
              help="Where to replay: a device of the kind the result was computed on (auto: "
                   "the first one); another kind is refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the verification as JSON.")
def command(result_file: str, model_file: str, device: str, as_json: bool) -> None:
    """Check RESULT_FILE against MODEL_FILE: the model's sha256, then a full re-run of the
    recorded evaluation (same protocol, seed and settings), number by number.

    A result with a method of your own (`evaluate --alignment-module FILE`) needs the very
    file again, --alignment-module FILE: its sha256 must be the recorded one.

    Exit 0 when everything matches, 1 when anything differs (each mismatch is named).
    The outcome is recorded in verify.json beside the result; the leaderboard's ✓ needs it.

    Example: numbench verify submissions/gru_multi_object_s0/result.json baselines/gru_multi_object_s0.pt
    """
    slow = slow_replay_note(result_file)
    if slow:
        stderr.print(f"[yellow]note[/]: {escape(slow)}", highlight=False)
    with evaluation_progress(engine_config().max_steps) as progress:
        v = verify(result_file, model_file, device=device, progress=progress)
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
