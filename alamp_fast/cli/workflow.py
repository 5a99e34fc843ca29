"""``alamp-fast init / select / label / status``: annotation rounds from the shell.

Why one module of this size: five subcommands' options, help texts and one-line error
messages; the work itself is in :mod:`alamp_fast.workflow`.

Thin wrappers over :class:`alamp_fast.workflow.Project` (the guide is ``docs/workflow.md``)::

    alamp-fast init   -p PROJECT --pool FEATURES [--classes a,b,c] [--strategy alamp] ...
    alamp-fast select -p PROJECT              # writes PROJECT/batches/round-NNN.csv
    alamp-fast select -p PROJECT --scheduler tcp://host:8786   # the same, on a Dask cluster
    alamp-fast label  -p PROJECT FILE.csv     # the batch CSV with its label column filled in
    alamp-fast status -p PROJECT
    alamp-fast export -p PROJECT --round N    # write round N's batch CSV again, from the state
    alamp-fast export -p PROJECT --format csv|parquet|npz --out FILE   # every label received
    alamp-fast export -p PROJECT --round N --format label-studio --out tasks.json

``select`` shows its progress (reading the pool, fitting, scoring) with an ETA on standard
error when it is a terminal, and nothing when it is piped or with ``--quiet``.

Errors are one line, ``alamp-fast COMMAND: error: ...``, naming the option and its value; the
exit status is 2 for a bad option or argument (a value, a path that does not exist) and 1 for
a failure of the operation itself (the project is locked, the pool changed, a label file holds
unknown ids, the disk is full). ``--debug`` shows the traceback instead. An output pipe closed
early (``alamp-fast status | head``) ends the command quietly.

About 500 lines: most of them are the five commands' options and their help texts, kept in
one place so that ``--help`` and this module say the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from alamp_fast.cli._options import add_cluster_arguments, cluster_options


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
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="no progress display (default: shown while the pool is read, the classifier "
            "fitted and the pool scored, when standard error is a terminal)",
        )
    elif name == "label":
        parser.add_argument(
            "file",
            metavar="FILE.csv",
            help="annotations: a CSV with id and label columns (a batch CSV "
            "with its label column filled in), or Label Studio's JSON export (.json) of the "
            "tasks written by export --format label-studio; empty labels are skipped",
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
    elif name == "export":
        parser.add_argument(
            "--round",
            metavar="N",
            help="write the batch CSV of round N again, exactly as select wrote it "
            "(to batches/round-NNN.csv, or to --out)",
        )
        parser.add_argument(
            "--format",
            metavar="FMT",
            help="export every label received: csv, parquet (needs pyarrow) or npz, with the "
            "columns id, label, round (the round whose batch held the sample; 0: not asked "
            "for), score (its acquisition score in that round) (default: from --out's suffix); "
            "with --round N: label-studio, the batch as Label Studio tasks (JSON)",
        )
        parser.add_argument("--out", metavar="FILE", help="where to write")
    elif name == "status":
        parser.add_argument(
            "--cv",
            default="5",
            metavar="K",
            help="folds of the cross-validated accuracy estimate (default 5; 0 skips it)",
        )
        parser.add_argument("--json", action="store_true", help="print the status as JSON")
        parser.add_argument("--pool", metavar="FILE", help="new location of the pool file")
    else:  # pragma: no cover - alamp_fast.cli only dispatches the names above
        raise ValueError(f"alamp_fast.cli.workflow has no subcommand {name!r}")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the Python traceback"
    )


def _int(option: str, text, low: int) -> int:
    from alamp_fast.cli import CLIError

    try:
        value = int(str(text))
    except ValueError:
        raise CLIError(f"{option} must be an integer, got {text!r}") from None
    if value < low:
        raise CLIError(f"{option} must be >= {low}, got {value}")
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
    """Run ``args.command``; every error ends it with one line (module docstring)."""
    from alamp_fast.workflow import CLI_MESSAGES

    token = CLI_MESSAGES.set(True)  # messages name --flags, not keyword arguments
    try:
        try:
            code = _COMMANDS[args.command](args)
            sys.stdout.flush()
            return code
        finally:
            CLI_MESSAGES.reset(token)
    except BrokenPipeError:
        # the reader went away (`status | head`): stop writing, quietly, as a SIGPIPE would
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        code, text = _explain(args.command, exc)
        print(f"alamp-fast {args.command}: error: {text}", file=sys.stderr)
        return code


def _explain(command: str, exc: Exception) -> tuple[int, str]:
    """Exit status and one line for an error (2: a bad option or path, 1: a failure)."""
    from alamp_fast.cli import CLIError
    from alamp_fast.workflow import ClusterError, OptionError, ProjectLockedError

    text = " ".join(str(exc).split())
    if isinstance(exc, (CLIError, OptionError, FileNotFoundError)):
        return 2, text
    if isinstance(exc, (ProjectLockedError, ClusterError)):
        return 1, text
    if isinstance(exc, OSError):  # a full disk, permissions, I/O errors
        what = exc.strerror or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        return 1, (
            f"{what}{where}; nothing half-written was kept: the project is as it was after "
            "its last completed command (re-run this one when the problem is solved)"
        )
    if isinstance(exc, (ValueError, TypeError)):
        # init's are all about its options and the files they name; later commands fail on
        # the project's content (labels pending, a changed pool, a label file's rows)
        return (2 if command == "init" else 1), text
    return 1, f"internal error ({type(exc).__name__}: {text}); re-run with --debug for details"


def _init(args) -> int:
    from alamp_fast.cli import CLIError
    from alamp_fast.workflow import Project

    cost = {"auto": None, "on": True, "off": False}.get(args.cost_sensitive.lower(), "bad")
    if cost == "bad":
        raise CLIError(f"--cost-sensitive must be auto, on or off, got {args.cost_sensitive!r}")
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
    from alamp_fast.cli import CLIError
    from alamp_fast.workflow import Project

    try:
        scheduler, chunk_rows = cluster_options(args)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    proj = Project.open(args.project, pool=args.pool)
    budget = None if args.budget is None else _int("--budget", args.budget, 1)
    progress = None if args.quiet else SelectProgress.auto(sys.stderr)
    try:
        batch = proj.select(
            budget=budget,
            allow_partial=args.allow_partial,
            out=args.out,
            scheduler=scheduler,
            chunk_rows=chunk_rows,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
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


class SelectProgress:
    """:meth:`Project.select`'s ``progress`` callback drawn on ``stream``: one bar with an ETA
    per stage of the round (reading the pool, fitting the classifier, scoring the pool)."""

    _STAGES = {
        "read": ("select: reading the pool", "rows"),
        "fit": ("select: fitting the classifier", "labels"),
        "score": ("select: scoring the pool", "rows"),
    }

    def __init__(self, stream) -> None:
        self.stream = stream
        self.stage: str | None = None
        self.bar = None

    @classmethod
    def auto(cls, stream) -> SelectProgress | None:
        """A display on ``stream`` when it is a terminal; None (quiet) when piped or a file."""
        from alamp_fast._progress import stream_is_terminal

        return cls(stream) if stream_is_terminal(stream) else None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from alamp_fast._progress import make_progress

        if stage != self.stage or self.bar is None:
            self.close()
            desc, unit = self._STAGES.get(stage, (f"select: {stage}", "it"))
            self.stage = stage
            self.bar = make_progress(True, total, desc, unit=unit, stream=self.stream)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """End the current bar (its line stays, complete), if any."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _label(args) -> int:
    from alamp_fast.cli import CLIError
    from alamp_fast.workflow import Project

    if os.path.isdir(args.file):
        raise CLIError(f"FILE.csv {args.file} is a directory, not a CSV file of labels")
    if not os.path.exists(args.file):
        raise CLIError(f"FILE.csv {args.file} does not exist")
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

    cv = _int("--cv", args.cv, 0)
    proj = Project.open(args.project, pool=args.pool)
    if args.pool is not None:
        proj.check_pool()  # a wrong --pool is an error, not a footnote of the cv line
    st = proj.status(cv=cv)
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
    lock = st["lock"]
    if lock and lock.get("stale"):
        done = "cleared" if lock.get("cleared") else "the next command takes it over"
        print(
            f"lock     stale: left by pid {lock.get('pid')} on {lock.get('host')} (alamp-fast "
            f"{lock.get('command')}, since {lock.get('started')}), which holds no lock any "
            f"more; {done} (its unfinished work, if any, was discarded)"
        )
    elif lock:
        print(
            f"lock     held by pid {lock.get('pid')} (alamp-fast {lock.get('command')}, since "
            f"{lock.get('started')})"
        )
    return 0


def _export(args) -> int:
    from alamp_fast.cli import CLIError
    from alamp_fast.workflow import Project

    if args.round is None and args.format is None and args.out is None:
        raise CLIError("give --round N (a batch CSV) or --format/--out (every label received)")
    if args.round is not None:
        round_no = _int("--round", args.round, 1)
        if args.format is not None and args.format.lower() == "label-studio":
            if args.out is None:
                raise CLIError("--format label-studio needs --out FILE.json")
            proj = Project.open(args.project)
            batch = proj.export_label_studio(round_no, args.out)
            print(f"round {batch.round}: {len(batch)} Label Studio tasks written to {args.out}")
            return 0
        if args.format is not None:
            raise CLIError(
                f"--round writes a batch CSV, or Label Studio tasks with --format label-studio; "
                f"got --format {args.format}"
            )
        proj = Project.open(args.project)
        batch = proj.export_round(round_no, out=args.out)
        _note(proj.notes)
        print(f"round {batch.round}: {len(batch)} samples written to {args.out or batch.path}")
        return 0
    if args.out is None:
        raise CLIError("--format needs --out FILE")
    proj = Project.open(args.project)
    n = proj.export_labels(args.out, format=args.format)
    print(f"{n} labels written to {args.out}")
    return 0


_COMMANDS = {
    "init": _init,
    "select": _select,
    "label": _label,
    "status": _status,
    "export": _export,
}
