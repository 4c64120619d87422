"""The `plates eval` and `plates compare` subcommands: argument parsing and file writing around the pure
functions of the other modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plates.errors import UserError
from plates.evaluation import extras as eval_extras
from plates.evaluation.common import FIELD_SLUGS, strict_json, write_report_json
from plates.evaluation.compare import compare_reports, decoding_warning, format_compare
from plates.evaluation.plots import write_plots
from plates.evaluation.render import format_markdown, format_report
from plates.evaluation.report import evaluate_file, load_report, write_report
from plates.evaluation.stats import DEFAULT_REPLICATES, DEFAULT_SEED, MAX_REPLICATES, MIN_REPLICATES
from plates.io import atomic_write, check_input_file, check_output_dir, guard_outputs, same_file, write_jsonl
from plates.labels import FIELDS, PLATE_NUMBER
from plates.outputs import input_path, output_dir, output_file


def _field_choice(name: str) -> str:
    slugs = {slug: f for f, slug in FIELD_SLUGS.items()}
    field = slugs.get(name, name)
    if field not in FIELDS:
        raise UserError(f"--by {name}: unknown field (choose from {', '.join(FIELDS)} or {', '.join(slugs)})")
    if field == PLATE_NUMBER:
        raise UserError(f"--by {PLATE_NUMBER}: plate numbers are free text; slice by an enumerated field")
    return field


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS.jsonl", type=input_path(),
                        help="`swift infer --result_path` output (response + labels per line), or predictions "
                             "(image + response per line) with --records")
    parser.add_argument("--records", metavar="RECORDS.jsonl", type=input_path(),
                        help="`plates parse` records: take the references from them, joined by image path")
    parser.add_argument("--json", metavar="PATH", dest="json_path", type=output_file("eval-json"),
                        help="write the report as JSON")
    parser.add_argument("--markdown", metavar="PATH", type=output_file("eval-markdown"),
                        help="write the report as Markdown")
    parser.add_argument("--plots", metavar="DIR", help="write PNG charts (per-field accuracy, confusion matrices)",
                        type=output_dir())
    parser.add_argument("--by", metavar="FIELD", action="append", default=[],
                        help="add per-slice accuracy by the reference value of FIELD (e.g. 车牌颜色 or "
                             "plate_colour), or by path:N, the N-th folder of the image path (0 = first, "
                             "-1 = the image's folder: camera, date), or by ccpd:tilt, ccpd:brightness, ccpd:blur "
                             "(bins of the figures a CCPD file name carries; with plate-location IoU when the "
                             "references have boxes) or ccpd:subset; repeatable. CCPD subset folders "
                             "(ccpd_base …) are recognised without it")
    parser.add_argument("--details", metavar="PATH", help="write one JSON line per answer (parse method, "
                                                           "violations, wrong fields, the per-answer scores the GRPO "
                                                           "rewards give) for error analysis",
                        type=output_file("eval-details"))
    parser.add_argument("--top", type=int, default=10, metavar="K", help="confusions kept per field (default 10)")
    eval_extras.add_arguments(parser)
    _add_bootstrap_arguments(parser)


def _add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_REPLICATES, metavar="N",
                        help=f"bootstrap replicates for the 95%% intervals, resampling whole vehicles (default "
                             f"{DEFAULT_REPLICATES}; 0 turns intervals off, else {MIN_REPLICATES} to "
                             f"{MAX_REPLICATES:,})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the bootstrap (default {DEFAULT_SEED}; same seed, same intervals)")


def _check_bootstrap(args: argparse.Namespace) -> None:
    if args.bootstrap != 0 and not MIN_REPLICATES <= args.bootstrap <= MAX_REPLICATES:
        raise UserError(f"--bootstrap {args.bootstrap}: use 0 (no intervals) or {MIN_REPLICATES} to "
                        f"{MAX_REPLICATES:,} replicates (fewer cannot place a 95% interval; more only cost time "
                        "and memory)")


PLOT_NAMES = ("accuracy.png", "legend.txt", "risk_coverage.png",
              *(f"confusion_{slug}.png" for slug in FIELD_SLUGS.values()))


def _guard_eval(args: argparse.Namespace) -> None:
    """Refuse, before reading anything, outputs that would replace an input (results, records) or each other, and
    a --plots folder holding files plates did not write there."""
    inputs = {"RESULTS": args.results, "--records": args.records}
    for flag, path in inputs.items():
        if path is not None:
            check_input_file(path, flag)
    outputs = {flag: getattr(args, dest, None) for flag, dest in
               (("--json", "json_path"), ("--markdown", "markdown"), ("--details", "details"), ("--html", "html"))}
    guard_outputs(inputs, outputs, command="eval")
    if args.plots:
        check_output_dir(args.plots, "--plots", owned=PLOT_NAMES, keep=[p for p in inputs.values() if p])
        for flag, path in outputs.items():
            if path and same_file(Path(path).parent, args.plots) and Path(path).name in PLOT_NAMES:
                raise UserError(f"{flag} {path}: would be replaced by a chart of --plots {args.plots}")


def _run_eval(args: argparse.Namespace) -> int:
    """Score a model's JSON answers field by field.

    Every response is parsed (strict JSON, then code fences, Python-dict text, JSON inside surrounding text,
    json-repair for truncated output), checked against eval/answer.schema.json, normalised through labels/ and
    compared with its reference. Fields whose reference is '未知' are left out of that field's support; answers
    that cannot be parsed count as wrong for every field. Malformed lines are skipped and listed.

    Every rate gets a 95% bootstrap interval resampling whole vehicles (carNNNN ids, else images); plate numbers
    are also scored per character position and plate type; the report records each answer so that
    `plates compare` can pair two reports of the same images.

    examples:
      plates eval runs/tuned/infer.jsonl --json tuned.json --markdown tuned.md --plots tuned-plots --by 车牌颜色
      plates eval predictions.jsonl --records records.jsonl
      plates eval results.jsonl --by path:-1 --target-accuracy 0.99 --html report.html   # per camera folder
      plates compare base.json tuned.json"""
    _guard_eval(args)
    extras = eval_extras.EvalExtras(args)
    by = [_field_choice(name) for name in extras.field_slices]
    if args.top < 0:
        raise UserError("--top must be >= 0")
    _check_bootstrap(args)
    details: list | None = [] if args.details else None
    report = evaluate_file(args.results, args.records, by=by, top=args.top, details=details,
                           bootstrap=args.bootstrap, seed=args.seed, samples=True, observers=extras.observers)
    for line in report["skipped"][:10]:
        print(f"plates eval: {args.results}: skipped {line}", file=sys.stderr)
    if report["skipped_lines"] > 10:
        print(f"plates eval: … and {report['skipped_lines'] - 10} more skipped lines (listed in --json/--markdown)",
              file=sys.stderr)
    if report.get("duplicates"):
        print(f"plates eval: warning: {args.results}: {report['duplicates']} duplicate samples (same image, prompt "
              f"and labels as an earlier line; appended results file?), each scored once on its first line",
              file=sys.stderr)
    if report["n"] == 0:
        raise UserError(f"{args.results}: no scorable answers ({report['skipped_lines']} malformed lines skipped)")
    print(format_report(report))
    extras.print(report)
    if args.json_path:
        write_report(args.json_path, report)
    if args.markdown:
        with atomic_write(args.markdown) as handle:
            handle.write(format_markdown(report) + extras.markdown(report))
    if args.details:
        write_jsonl(args.details, (strict_json(row) for row in details))
    if args.plots:
        paths = write_plots(report, args.plots) + extras.plots(report, args.plots)
        print(f"wrote {len(paths)} charts to {args.plots}")
    extras.write_html(report)
    return 0


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("before", metavar="A.json", help="`plates eval --json` report of the base model",
                        type=input_path())
    parser.add_argument("after", metavar="B.json", type=input_path(), help="report of the fine-tuned model")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), help="column names (default: file names)")
    parser.add_argument("--markdown", metavar="PATH", type=output_file("compare-markdown"),
                        help="also write the table as Markdown")
    parser.add_argument("--json", metavar="PATH", dest="json_path", type=output_file("compare-json"),
                        help='also write the comparison as JSON ({"paired", "metrics": {name: {"a", "b", "delta", '
                             '"ci95", "p_value"}}})')
    _add_bootstrap_arguments(parser)


def _run_compare(args: argparse.Namespace) -> int:
    """Before/after table of two `plates eval --json` reports: deltas in percentage points, each with a 95%
    interval and a p-value, significant rows marked '*'.

    When both reports scored the same answers (plates eval records them), the test is paired: the bootstrap
    draws the same vehicles for both models and the p-value is the exact McNemar test on the answers one got
    right and the other wrong. Otherwise each report is resampled on its own and the table says so. A warning
    is printed when the two used different decoding modes (`plates infer --decoding`).

    example: plates compare base.json tuned.json --names 原始模型 微调后模型 --json delta.json"""
    _check_bootstrap(args)
    check_input_file(args.before)
    check_input_file(args.after)
    guard_outputs({"A.json": args.before, "B.json": args.after},
                  {"--json": args.json_path, "--markdown": args.markdown}, command="compare")
    before, after = load_report(args.before), load_report(args.after)
    names = tuple(args.names) if args.names else (Path(args.before).stem, Path(args.after).stem)
    if before["n"] != after["n"]:
        print(f"plates compare: note: A scored {before['n']} answers, B {after['n']}", file=sys.stderr)
    comparison = compare_reports(before, after, args.bootstrap, args.seed)
    warning = decoding_warning(comparison)
    if warning:
        print(f"plates compare: warning: {warning}", file=sys.stderr)
        comparison["warning"] = warning
    print(format_compare(before, after, names, comparison=comparison))
    if args.markdown:
        with atomic_write(args.markdown) as handle:
            handle.write(format_compare(before, after, names, markdown=True, comparison=comparison))
    if args.json_path:
        write_report_json(args.json_path, comparison)
    return 0


COMMANDS = {
    "eval": (_configure_eval, _run_eval, "score JSON answers per field (schema check, accuracy, confusions)"),
    "compare": (_configure_compare, _run_compare, "before/after table of two `plates eval --json` reports"),
}
