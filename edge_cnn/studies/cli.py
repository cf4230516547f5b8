"""``edgecnn study NAME [ARGS...]``: run one of the measurement studies with its own arguments.

The studies parse their arguments themselves (argparse, shared with ``tools/*.py``), so this
command passes everything after NAME through untouched, ``--help`` included.
"""

from __future__ import annotations

import click

from edge_cnn.studies import STUDIES, load_study, summary


class StudyCommand(click.Command):
    """Lists the studies and their one-line summaries under the help text."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Studies"):
            formatter.write_dl([(name, summary(name)) for name in STUDIES])
        super().format_epilog(ctx, formatter)


@click.command(cls=StudyCommand, context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False,
                                                   "help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def study(ctx: click.Context, name: str, args: tuple[str, ...]) -> None:
    """Run a measurement study: NAME, then the study's own arguments.

    \b
    Examples:
      edgecnn study pedestrian --help                       # what it measures, its arguments
      edgecnn study pedestrian --run runs/ped --out runs/ped/compare
      edgecnn study enrollment --att ../shared/data/att_faces --out runs/enrollment
      edgecnn study cv --data ../shared/data/pedestrian --out runs/ped_cv
    """
    ctx.exit(load_study(name).main(list(args), prog=f"{ctx.command_path} {name}"))
