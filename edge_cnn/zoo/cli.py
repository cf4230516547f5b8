"""``edgecnn zoo``: the architectures with their parameters and MACs; ``zoo show`` per layer."""

from __future__ import annotations

import json

import click

from edge_cnn.preprocess import parse_size
from edge_cnn.report import print_table, write_reports

OVERVIEW_COLUMNS = ["family", "name", "params", "MACs", "input"]
LAYER_COLUMNS = ["name", "type", "kernel/stride", "output shape", "params", "macs"]


@click.group(invoke_without_command=True)
@click.option("--family", default=None, help="Only this family (e.g. resnet, mobilenet).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of the table.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), help="Also write the table as Markdown.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write the table as CSV.")
@click.pass_context
def zoo(ctx: click.Context, family: str | None, as_json: bool, md_path: str | None, csv_path: str | None) -> None:
    """List every architecture: family, name, parameters, MACs at its default input.

    \b
    Examples:
      edgecnn zoo                          # the whole zoo (first run builds each model once, then cached)
      edgecnn zoo --family resnet --json   # machine-readable
      edgecnn zoo show googlenet           # per-layer table, like the GoogLeNet paper's
      edgecnn zoo show vgg16 --input-size 64x64
    """
    if ctx.invoked_subcommand is not None:
        return
    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.io import ensure_writable_file
    from edge_cnn.zoo import list_models, model_info
    from edge_cnn.zoo.table import zoo_table

    for flag, path in (("--md", md_path), ("--csv", csv_path)):
        if path:
            ensure_writable_file(path, flag)  # before the first build, which can take minutes
    names = list_models(family)
    if not names:
        families = sorted({model_info(n).family for n in list_models()})
        raise EdgeCNNError(f"no family {family!r}: use one of {', '.join(families)}")
    rows = _with_progress(names, zoo_table)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table([{**r, "MACs": human_count(r["macs"])} for r in rows], OVERVIEW_COLUMNS,
                    title="edgecnn model zoo (params: torchvision convention)")
    write_reports(rows, md_path=md_path, csv_path=csv_path, columns=["family", "name", "params", "macs", "input"])
    for path in (md_path, csv_path):
        if path:
            click.echo(f"wrote {path}", err=True)


def human_count(value: int) -> str:
    """1814000000 -> '1.81 G', 416000 -> '416 K'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return str(value)


def _with_progress(names, make_table):
    """A live bar on a terminal; in a log or pipe, one line per model built (the first run builds every
    model, minutes; later runs read the cache and print nothing)."""
    import sys

    from rich.progress import Progress

    if not sys.stderr.isatty():
        count = len(names)

        def line(name: str, built: bool) -> None:
            if built:
                click.echo(f"profiled {name} ({names.index(name) + 1}/{count})", err=True)

        return make_table(names, on_row=line)
    with Progress(transient=True, disable=len(names) < 3) as progress:
        task = progress.add_task("profiling models", total=len(names))
        return make_table(names, on_row=lambda name, built: progress.advance(task))


@zoo.command("show")
@click.argument("name")
@click.option("--input-size", default=None, help="HxW (default: the model's own), e.g. 128x64.")
@click.option("--channels", type=int, default=None, help="Input channels (default: the model's own).")
@click.option("--num-classes", type=int, default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def show(name: str, input_size: str | None, channels: int | None, num_classes: int, as_json: bool) -> None:
    """Per-layer table of NAME: type, kernel/stride, output shape, params, MACs.

    \b
    Examples:
      edgecnn zoo show googlenet
      edgecnn zoo show mobilenet_v2 --input-size 128x64 --num-classes 2
    """
    from edge_cnn.zoo import build, model_info, profile

    info = model_info(name)
    height, width = parse_size(input_size) if input_size else info.default_input_shape[:2]
    shape = (height, width, channels or info.default_input_shape[2])
    totals = profile(build(name, input_shape=shape, num_classes=num_classes))
    if as_json:
        click.echo(json.dumps({"name": name, "input": list(shape), **totals}, indent=2))
        return
    print_table(totals["layers"], LAYER_COLUMNS, title=f"{name} at {shape[0]}x{shape[1]}x{shape[2]}")
    click.echo(f"total: {totals['params']:,} params, {human_count(totals['macs'])} MACs")
