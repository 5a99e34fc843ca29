"""``alamp-fast init / select / label / status``: annotation rounds from the shell.

Thin wrappers over :class:`alamp_fast.workflow.Project` (the guide is ``docs/workflow.md``)::

    alamp-fast init   -p PROJECT --pool FEATURES [--classes a,b,c] [--strategy alamp] ...
    alamp-fast select -p PROJECT              # writes PROJECT/batches/round-NNN.csv
    alamp-fast select -p PROJECT --scheduler tcp://host:8786   # the same, on a Dask cluster
    alamp-fast label  -p PROJECT FILE.csv     # the batch CSV with its label column filled in
    alamp-fast status -p PROJECT
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from alamp_fast.simulate_cli import add_cluster_arguments, cluster_options


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Fill the parser of subcommand ``name`` (init, select, label or status)."""
    parser.add_argument(
        "-p",
        "--project",
        default=".",
        metavar="DIR",
        help="project directory (default: the current directory)",
    )
    if name == "init":
        parser.add_argument(
            "--pool",
            required=True,
            metavar="FILE",
            help="pool features: .npz (quantized Xq/scale/zero_point, or X) or "
            ".npy; labels in it are ignored",
        )
        parser.add_argument(
            "--classes",
            metavar="LIST|FILE",
            help="class names, comma-separated or a file with one per line "
            "(default: the 'classes' array of an .npz pool)",
        )
        parser.add_argument(
            "--ids",
            metavar="FILE",
            help="sample ids, one per pool row: a text file (one per line) or a "
            ".csv (column --id-column); default: row numbers",
        )
        parser.add_argument(
            "--id-column",
            metavar="NAME",
            help="id column of a .csv --ids file (default 'id'), or without "
            "--ids the array of the .npz pool holding the ids (e.g. paths)",
        )
        parser.add_argument(
            "--strategy",
            default="alamp",
            metavar="NAME",
            help="random, margin, entropy, least_confidence, coreset, alamp "
            "(default), alamp-div, random-div, margin-div",
        )
        parser.add_argument(
            "--budget", default="100", metavar="N", help="samples per round (default 100)"
        )
        parser.add_argument(
            "--init", metavar="N", help="size of the first, random batch (default: --budget)"
        )
        parser.add_argument(
            "--classifier",
            default="linear-svc",
            metavar="NAME",
            help="linear-svc (default), logreg, svc, af-svm, af-svm-cv",
        )
        parser.add_argument(
            "--cost-sensitive",
            default="auto",
            metavar="auto|on|off",
            help="class_weight='balanced' (auto: on once the labels received have ir >= 0.1)",
        )
        parser.add_argument(
            "--certainty",
            metavar="NAME",
            help="alamp's certainty measure: margin (default), confidence, neg_entropy",
        )
        parser.add_argument(
            "--seed",
            default="0",
            metavar="N",
            help="seed (default 0; the picks match simulate --seed N, 1 run)",
        )
        parser.add_argument(
            "--normalize",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="L2-normalise pool rows (default: on)",
        )
    elif name == "select":
        parser.add_argument(
            "--budget", metavar="N", help="batch size of this round (default: the project's)"
        )
        parser.add_argument(
            "--allow-partial",
            action="store_true",
            help="start a new round although the last batch has unlabeled "
            "samples (they return to the pool)",
        )
        parser.add_argument("--out", metavar="FILE", help="also write the batch CSV there")
        parser.add_argument(
            "--pool",
            metavar="FILE",
            help="new location of the pool file (same features; rows may have been appended)",
        )
        add_cluster_arguments(parser)
    elif name == "label":
        parser.add_argument(
            "file",
            metavar="FILE.csv",
            help="annotations: a CSV with id and label columns (a batch CSV "
            "with its label column filled in); empty labels are skipped",
        )
        parser.add_argument(
            "--relabel",
            action="store_true",
            help="replace the labels of samples labeled before with another class",
        )
        parser.add_argument(
            "--allow-unrequested",
            action="store_true",
            help="accept labels of pool samples no batch asked for",
        )
        parser.add_argument(
            "--id-column",
            default="id",
            metavar="NAME",
            help="column of the sample ids (default 'id')",
        )
        parser.add_argument(
            "--label-column",
            default="label",
            metavar="NAME",
            help="column of the class names (default 'label')",
        )
    elif name == "status":
        parser.add_argument(
            "--cv",
            default="5",
            metavar="K",
            help="folds of the cross-validated accuracy estimate (default 5; 0 skips it)",
        )
        parser.add_argument("--json", action="store_true", help="print the status as JSON")
        parser.add_argument("--pool", metavar="FILE", help="new location of the pool file")
    else:  # pragma: no cover - cli.py only dispatches the four names above
        raise ValueError(f"workflow_cli has no subcommand {name!r}")


def _int(option: str, text, low: int) -> int:
    try:
        value = int(str(text))
    except ValueError:
        raise ValueError(f"{option} must be an integer, got {text!r}") from None
    if value < low:
        raise ValueError(f"{option} must be >= {low}, got {value}")
    return value


def _classes(text: str | None):
    if text is None:
        return None
    if os.path.isfile(text):
        with open(text, encoding="utf-8-sig") as f:
            return [line.strip() for line in f if line.strip()]
    return [c.strip() for c in text.split(",") if c.strip()]


def _note(lines) -> None:
    for line in lines:
        print(f"alamp-fast: note: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``args.command``; user errors raise CLIError / ValueError (one line, exit 2)."""
    from alamp_fast.cli import CLIError
    from alamp_fast.workflow import ProjectLockedError

    try:
        return _COMMANDS[args.command](args)
    except ProjectLockedError as exc:
        raise CLIError(str(exc)) from None


def _init(args) -> int:
    from alamp_fast.workflow import Project

    cost = {"auto": None, "on": True, "off": False}.get(args.cost_sensitive.lower(), "bad")
    if cost == "bad":
        raise ValueError(f"--cost-sensitive must be auto, on or off, got {args.cost_sensitive!r}")
    proj = Project.init(
        args.project,
        args.pool,
        classes=_classes(args.classes),
        ids=args.ids,
        id_column=args.id_column,
        strategy=args.strategy,
        budget=_int("--budget", args.budget, 1),
        init=None if args.init is None else _int("--init", args.init, 1),
        classifier=args.classifier,
        cost_sensitive=cost,
        seed=_int("--seed", args.seed, 0),
        normalize=args.normalize,
        strategy_kwargs={"certainty": args.certainty} if args.certainty else None,
    )
    _note(proj.notes)
    s = proj.settings
    pool = proj.status(cv=0)["pool"]
    print(
        f"created project {proj.path}: {pool['n_rows']} pool samples x {pool['n_features']} "
        f"features, {len(proj.classes)} classes, strategy {s['strategy']}, {s['budget']} per "
        f"round (first round {s['init']}), classifier {s['classifier']}"
    )
    print(f"next: alamp-fast select -p {args.project}")
    return 0


def _select(args) -> int:
    from alamp_fast.workflow import Project

    scheduler, chunk_rows = cluster_options(args)
    proj = Project.open(args.project, pool=args.pool)
    batch = proj.select(
        budget=None if args.budget is None else _int("--budget", args.budget, 1),
        allow_partial=args.allow_partial,
        out=args.out,
        scheduler=scheduler,
        chunk_rows=chunk_rows,
    )
    _note(proj.notes)
    if batch.reissued:
        print(
            f"round {batch.round} ({len(batch)} samples) is still waiting for labels: {batch.path}"
        )
    else:
        print(
            f"round {batch.round}: {len(batch)} samples ({batch.kind}"
            f"{'' if batch.kind != 'strategy' else ' ' + proj.settings['strategy']}) "
            f"written to {batch.path}"
        )
    if args.out:
        print(f"copy written to {args.out}")
    print(f"fill in its label column, then: alamp-fast label -p {args.project} {batch.path}")
    return 0


def _label(args) -> int:
    from alamp_fast.workflow import Project

    proj = Project.open(args.project)
    rep = proj.label(
        args.file,
        relabel=args.relabel,
        allow_unrequested=args.allow_unrequested,
        id_column=args.id_column,
        label_column=args.label_column,
    )
    _note(rep.notes)
    parts = [f"{rep.new} new"]
    if rep.relabeled:
        parts.append(f"{rep.relabeled} relabeled")
    if rep.unchanged:
        parts.append(f"{rep.unchanged} already known")
    if rep.blank:
        parts.append(f"{rep.blank} without a label (skipped)")
    print(f"{args.file}: " + ", ".join(parts))
    if rep.pending:
        print(f"round {proj.rounds}: {rep.pending} samples still without a label")
    else:
        print(f"round {proj.rounds} is complete; next: alamp-fast select -p {args.project}")
    return 0


def _status(args) -> int:
    from alamp_fast.workflow import Project

    proj = Project.open(args.project, pool=args.pool)
    st = proj.status(cv=_int("--cv", args.cv, 0))
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    s = st["settings"]
    print(f"project  {st['project']}")
    print(
        f"strategy {s['strategy']}, {s['budget']} per round, classifier {s['classifier']}, "
        f"seed {s['seed']}"
    )
    print(f"pool     {st['pool']['path']}: {st['pool']['n_rows']} samples")
    print(f"labels   {st['n_labeled']} labeled ({st['n_label_events']} labels received)")
    if st["pending"]:
        print(f"pending  {len(st['pending'])} samples of round {st['rounds']} without a label")
    counts = ", ".join(f"{c} {n}" for c, n in st["class_counts"].items())
    print(f"classes  {counts}")
    print(f"ir       {'-' if st['ir'] is None else format(st['ir'], '.3f')}")
    cv = st["cv"]
    if cv is not None:
        print(
            f"cv       accuracy {cv['accuracy']:.3f} +- {cv['accuracy_std']:.3f}, balanced "
            f"{cv['balanced_accuracy']:.3f} ({cv['folds']}-fold over {cv['n_labels']} labels)"
        )
    elif st["cv_note"]:
        print(f"cv       - ({st['cv_note']})")
    print(f"rounds   {st['rounds']}")
    if st["history"]:
        print("  round  kind      size  labeled before  pool  time")
        for r in st["history"]:
            print(
                f"  {r['round']:>5}  {r['kind']:<8}  {r['size']:>4}  {r['n_labeled']:>14}  "
                f"{r['n_pool']:>4}  {r['time']}"
            )
    if st["lock"]:
        print(f"lock     held by pid {st['lock'].get('pid')} ({st['lock'].get('command')})")
    return 0


_COMMANDS = {"init": _init, "select": _select, "label": _label, "status": _status}
