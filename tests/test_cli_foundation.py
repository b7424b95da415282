"""The foundation verbs: tasks, show, pairs — tables, --json, --help, one-line errors."""

import json

import pytest
from click.testing import CliRunner

from numbench.cli import main


@pytest.fixture
def run():
    def invoke(*args):
        return CliRunner().invoke(main, list(args))
    return invoke


def test_tasks_json_lists_five_tasks_with_versions_and_hashes(run):
    res = run("tasks", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert len(doc["tasks"]) == 5
    for t in doc["tasks"]:
        assert t["version"] >= 1
        assert all(len(s["sha256"]) == 64 for s in t["splits"].values())


def test_show_table_and_json(run):
    res = run("show", "same_object", "-n", "2", "--split", "holdout")
    assert res.exit_code == 0 and "same_object" in res.output
    doc = json.loads(run("show", "multi_object", "-n", "3", "--json").output)
    assert len(doc["sequences"]) == 3
    seq = doc["sequences"][0]
    assert seq["tokens"][0] == "B" and seq["tokens"][-1] == "E"
    assert seq["scored_targets"][-1] == len(seq["tokens"]) - 1  # E is scored


def test_pairs_json_counterfactuals_follow_protocol(run):
    res = run("pairs", "multi_object", "--program", "up_down", "--variable", "count", "--json",
              "-n", "20")
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert doc["size"] == 1000 and len(doc["pairs"]) == 20
    for p in doc["pairs"]:
        i = p["base_pos"]
        assert p["counterfactual"][: i + 1] == p["base"][: i + 1]
        assert p["base"][i] != "T" and p["source"][p["source_pos"]] not in ("B", "T", "E")
        assert p["counterfactual"][-1] == "E"
        # the count written at i equals the number of responses still to come, unless it
        # is a demo-phase swap (then f(N) or f(count) responses follow T)
        tail = p["counterfactual"][i + 1:]
        if "T" not in tail:
            assert tail.count("R") == p["values"]["count"]


def test_pairs_table_highlights(run):
    res = run("pairs", "single_object", "--program", "up_up", "--variable", "full", "-n", "1")
    assert res.exit_code == 0 and "counterfactual" in res.output


@pytest.mark.parametrize("args, message", [
    (("show", "nope"), "unknown task 'nope'"),
    (("pairs", "multi_object", "--program", "up_up", "--variable", "count"), "no variable 'count'"),
])
def test_bad_input_is_one_line_exit_2(run, args, message):
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("verb", ["tasks", "show", "pairs"])
def test_help_has_an_example(run, verb):
    res = run(verb, "--help")
    assert res.exit_code == 0 and "Example: numbench" in res.output


def test_every_verb_loads_its_own_command_and_only_when_named(run):
    """Verbs load lazily (``cli.VERBS``): each name gives the command of that name, --help
    lists them all, and neither importing the CLI nor its --help imports a verb's module
    (compare's pandas, evaluate's torch)."""
    import subprocess
    import sys

    import click

    from numbench.cli import SUMMARIES, VERBS

    ctx = click.Context(main)
    assert [main.get_command(ctx, name).name for name in VERBS] == list(VERBS)
    assert main.get_command(ctx, "nope") is None
    listed = run("--help").output
    assert all(f"  {name} " in listed for name in VERBS)
    # --help lists the verbs from SUMMARIES, each its command's own first help sentence
    assert {name: main.get_command(ctx, name).get_short_help_str(limit=10**6)
            for name in VERBS} == SUMMARIES
    for imports in ("", "numbench.cli.main(['--help'])"):  # neither loads a verb
        code = ("import sys, numbench.cli\ntry:\n    " + (imports or "pass") + "\n"
                "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules "
                "if m.startswith(('pandas', 'torch', 'numbench.cli.'))))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == "[]", imports
