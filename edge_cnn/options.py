"""What every verb's command line shares: ``--recipe``, image arguments, and the end of a batch.

``--recipe NAME|FILE.yaml`` fills the verb's defaults (``ctx.default_map``), so a flag given on
the command line wins; each value is checked against its flag's type before the verb starts,
so a bad recipe costs nothing. Verbs over many images (predict, detect, face, explain) expand
their arguments with ``collect_images`` and end with ``finish_batch``: one bad image never
stops the others, and the verb still ends with one ``error:`` line and exit 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge_cnn.errors import EdgeCNNError
from edge_cnn.preprocess import find_images
from edge_cnn.recipes import load_recipe


def _apply_recipe(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    recipe = load_recipe(value)
    known = {p.name: p for p in ctx.command.params}
    unknown = sorted(set(recipe) - set(known))
    if unknown:
        raise click.BadParameter(f"unknown keys {unknown}; a recipe's keys are this verb's flag names", ctx, param)
    for key, recipe_value in recipe.items():  # each value as its flag would take it, before any work
        flag = known[key]
        many = getattr(flag, "multiple", False) or flag.nargs != 1
        if isinstance(recipe_value, (dict, list)) != many and recipe_value is not None:
            raise click.BadParameter(f"key {key!r} has {recipe_value!r}, not a value its flag takes", ctx, param)
        try:
            flag.type_cast_value(ctx, recipe_value)
        except click.BadParameter as exc:
            raise click.BadParameter(f"key {key!r}: {exc.message}", ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **recipe}
    return value


def recipe_option(function):
    """``--recipe NAME|FILE.yaml``: its keys are the verb's flags; flags on the command line win."""
    return click.option(
        "--recipe",
        is_eager=True,
        expose_value=False,
        callback=_apply_recipe,
        help="A packaged recipe's name (pedestrian, faces_id, face) or a YAML file whose keys are this "
        "verb's flag names; command-line flags override it.",
    )(function)


def collect_inputs(sources: tuple[str, ...]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files of ``sources`` (files as given, folders expanded recursively and sorted) and
    (source, problem) for each source that gives none."""
    paths, failures = [], []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            try:
                paths.extend(find_images(path, "folder"))
            except EdgeCNNError as exc:
                failures.append((source, str(exc)))
        elif path.exists():
            paths.append(path)
        else:
            failures.append((source, f"image {path} does not exist: check the path"))
    return paths, failures


def finish_batch(failures: list[tuple[str, str]], done: int, where: str) -> None:
    """End a verb over many inputs: nothing when none failed, else one error line (exit 2) naming the
    failed inputs, after the good ones were processed. ``failures`` holds (input, message) pairs; with
    several, each message goes on its own ``skipped:`` line first."""
    if len(failures) == 1:
        raise EdgeCNNError(f"{failures[0][1]} (the other {done} input(s) {where})")
    if failures:
        for _, message in failures:
            click.secho(f"skipped: {message}", fg="yellow", err=True)
        names = ", ".join(name for name, _ in failures)
        raise EdgeCNNError(
            f"{len(failures)} inputs failed ({names}): fix or remove them, the reasons are listed above "
            f"(the other {done} input(s) {where})"
        )
