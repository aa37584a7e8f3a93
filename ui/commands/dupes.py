"""`vitsearch dupes`: list duplicate groups with tiers and reasons, record decisions, resolve
groups by rules (dry run, --apply, --undo), check a folder against the library, calibrate."""

from __future__ import annotations

import json
import sys

from ..text import shown
from .arguments import score, store_flag
from .choices import TIERS

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    dupes = commands.add_parser("dupes", help="groups of identical, near-duplicate and similar photos, and of videos")
    store_flag(dupes)
    dupes.add_argument("--tier", action="append", choices=TIERS,
                       help="only members of these tiers (repeatable; default: all, or identical, same-pixels "
                            "and near with --resolve)")
    dupes.add_argument("--near", type=score, metavar="S",
                       help="near-duplicate threshold (default: the store's calibrated one, else 0.95)")
    dupes.add_argument("--similar", type=score, metavar="S",
                       help="similar threshold (default: the store's calibrated one, else 0.85)")
    dupes.add_argument("--json", action="store_true", help="one JSON object per group (or per plan with --resolve)")
    dupes.add_argument("--histogram", action="store_true",
                       help="print the distribution of nearest-neighbour scores, to choose thresholds")
    dupes.add_argument("--against", metavar="PATH",
                       help="only groups with files both under PATH and elsewhere (is this folder already in the "
                            "library?)")
    _cleanup_flags(dupes)
    dupes.set_defaults(handler=run)


def _cleanup_flags(dupes) -> None:
    dupes.add_argument("--resolve", metavar="RULES",
                       help="plan a cleanup: keeper preferences in order, ties falling to the next, e.g. "
                            "largest-resolution,largest-file,oldest-capture,has-exif,shortest-path,prefer:PATH,"
                            "keep-raw; for videos also longest, highest-bitrate (a dry run unless --apply)")
    dupes.add_argument("--protect", action="append", metavar="PATH",
                       help="never move files under PATH; a protected copy is the one kept (repeatable)")
    dupes.add_argument("--apply", action="store_true",
                       help="carry out the --resolve plan: move the others into the store's quarantine folder, "
                            "manifest first")
    dupes.add_argument("--override-ratings", action="store_true",
                       help="let the rules alone choose keepers: by default the best-rated member of a group (a "
                            "picked one first) is kept and nothing rated above its keeper, or picked, moves")
    dupes.add_argument("--min-difference", type=_ratio, metavar="RATIO",
                       help="resolve a copy only if it differs from its keeper by RATIO (e.g. 1.2) in bytes, pixels "
                            "or measured detail; groups of copies too alike to choose between are left out")
    dupes.add_argument("--mark", choices=["xmp"],
                       help="instead of moving: write a reject (xmp:Rating -1) and a keyword naming the keeper into "
                            "each other file's XMP sidecar (created if absent; images are never written)")
    dupes.add_argument("--merge-metadata", action="store_true",
                       help="give each keeper's sidecar the group's keywords and best rating (with --mark or "
                            "--apply)")
    dupes.add_argument("--undo", nargs="?", const="", metavar="MANIFEST",
                       help="put back every file and sidecar of a cleanup (default: the last --apply or --mark)")
    dupes.add_argument("--calibrate", action="store_true",
                       help="label sample pairs (same photo or not) to set this store's thresholds")
    dupes.add_argument("--not-duplicates", nargs="+", type=int, metavar="ID",
                       help="record that these images are not duplicates of one another")
    dupes.add_argument("--keep", type=int, metavar="ID", help="record this image as the one to keep")
    dupes.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                       help="how long a decision, --apply or --undo waits for a running `vitsearch index` to "
                            "release the store before saying it is busy (default 10)")


def run(args) -> int:
    from ...indexer.store.decisions import record_keeper, record_not_duplicates

    if args.undo is not None:
        return _undo(args)
    if args.not_duplicates or args.keep is not None:
        if args.not_duplicates:
            added = record_not_duplicates(args.store, args.not_duplicates, wait=args.wait)
            print(f"recorded: not duplicates ({added} new pair{'s' if added != 1 else ''})", file=sys.stderr)
        if args.keep is not None:
            record_keeper(args.store, args.keep, wait=args.wait)
            print(f"recorded: keep {args.keep}", file=sys.stderr)
        return 0
    from ...search import ImageIndex
    from ...search.dupes import TIERS, find_duplicates, nearest_neighbour_scores
    from ...search.resolve import parse_rules, plan_cleanup, summarize

    _check_cleanup_flags(args)
    rules = parse_rules(args.resolve) if args.resolve else None
    if args.apply:
        _settle(args)  # an interrupted apply or undo is finished before a new plan is made
    index = ImageIndex.open(args.store)
    if args.histogram:
        _print_histogram(nearest_neighbour_scores(index))
        return 0
    if args.calibrate:
        from ..calibrate import run_calibration

        return run_calibration(index, args, shown)
    if rules is None:
        groups = find_duplicates(index, near=args.near, similar=args.similar, tiers=tuple(args.tier or TIERS),
                                 against=args.against)
        _note_unsigned(groups[0].unsigned if groups else 0)
        for group in groups:
            print(json.dumps(group.to_record()) if args.json else _group_line(group))
        print(f"{len(groups)} groups (* = keeper)", file=sys.stderr)
        return 0
    plans = plan_cleanup(index, rules, tiers=args.tier, near=args.near, similar=args.similar, against=args.against,
                         protect=args.protect or (), override_ratings=args.override_ratings,
                         min_difference=args.min_difference)
    _note_unsigned(plans.unsigned)
    for plan in plans:
        print(json.dumps(plan.to_record()) if args.json else _plan_lines(plan))
    for keeper, why in plans.skipped:
        print(f"left alone: the group of {shown(keeper)}: {why}", file=sys.stderr)
    for plan in plans:
        if plan.guard:
            print(f"note: {shown(plan.guard)}", file=sys.stderr)
    if plans.close:
        print(f"left out: {plans.close} group{'s' if plans.close != 1 else ''} whose copies differ by less than "
              f"--min-difference {args.min_difference:g} (bytes, pixels and detail)", file=sys.stderr)
    if not args.apply:
        _say_unfinished(args)
    if args.mark:
        return _mark(args, plans)
    print(summarize(plans) + ("" if args.apply else " (dry run: add --apply to move them, or --mark xmp to mark "
                              "them in their sidecars)"), file=sys.stderr)
    if args.apply and plans:
        return _apply(args, plans)
    return 0


def _ratio(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ratio of at least 1 (e.g. 1.2: 20% apart)")
    return value


def _check_cleanup_flags(args) -> None:
    from ...indexer.errors import ConfigError

    if args.apply and not args.resolve:
        raise ConfigError("--apply carries out a --resolve plan: add --resolve RULES (try it without --apply first)")
    if args.mark and not args.resolve:
        raise ConfigError("--mark xmp marks the files of a --resolve plan: add --resolve RULES")
    if args.mark and args.apply:
        raise ConfigError("--mark xmp marks instead of moving: use --mark or --apply, not both")
    if args.min_difference is not None and not args.resolve:
        raise ConfigError("--min-difference guards a --resolve plan: add --resolve RULES")
    if args.merge_metadata and not (args.mark or args.apply):
        raise ConfigError("--merge-metadata goes with --mark xmp or --apply")


def _mark(args, plans) -> int:
    from ...indexer.sidecar_marks import mark_sidecars
    from ...search.resolve import plan_marks

    report = mark_sidecars(args.store, plan_marks(plans, reject=True, merge=args.merge_metadata), wait=args.wait)
    return _said_marks(report)


def _said_marks(report, with_apply: bool = False) -> int:
    for path, why in report.skipped:
        print(f"not marked: {shown(path)}: {why}", file=sys.stderr)
    created = sum(w.created for w in report.written)
    print(f"wrote {len(report.written)} sidecars ({created} new); image files untouched"
          + ("" if with_apply else "; undo with `vitsearch dupes --undo`"), file=sys.stderr)
    return 0


def _note_unsigned(unsigned: int) -> None:
    if unsigned:
        print(f"note: {unsigned} images have no signatures yet (same-pixel, rotated and mirrored "
              "copies among them are missed): run `vitsearch index` on their folders to add them", file=sys.stderr)


def _apply(args, plans) -> int:
    from ...indexer.store.quarantine import quarantine_plan

    report = quarantine_plan(args.store, plans.keepers(), wait=args.wait)
    for path, why in report.skipped:
        print(f"not moved: {shown(path)}: {why}", file=sys.stderr)
    if report.manifest is None:
        print("moved nothing into the quarantine", file=sys.stderr)
    else:
        print(f"moved {report.images} files and {report.companions} companion files ({report.bytes:,} bytes) "
              f"into the quarantine; manifest {shown(str(report.manifest))}; undo with `vitsearch dupes --undo`",
              file=sys.stderr)
    if args.merge_metadata:
        from ...indexer.sidecar_marks import mark_sidecars
        from ...search.resolve import plan_marks

        marks = plan_marks(plans, reject=False, merge=True)
        _said_marks(mark_sidecars(args.store, marks, with_apply=report.manifest, wait=args.wait), with_apply=True)
    return 0


def _settle(args) -> None:
    from ...indexer.store.quarantine import settle_quarantine

    for note in settle_quarantine(args.store, wait=args.wait):
        print(f"note: {shown(note)}", file=sys.stderr)


def _say_unfinished(args) -> None:
    from ...indexer.store.quarantine import quarantine_dir, unfinished_manifests

    for manifest in unfinished_manifests(quarantine_dir(args.store)):
        print(f"note: an apply or undo was interrupted ({shown(manifest.name)}): `--apply` finishes it first, "
              "`--undo` puts its files back", file=sys.stderr)


def _undo(args) -> int:
    from ...indexer.undo import undo_cleanup

    report = undo_cleanup(args.store, args.undo or None, wait=args.wait)
    skipped = 0
    for part, verb in ((report.moves, "files"), (report.marks, "sidecars")):
        if part is None:
            continue
        done = part.moved if verb == "files" else part.written
        for path, why in part.skipped:
            print(f"not restored: {shown(path)}: {why}", file=sys.stderr)
        skipped += len(part.skipped)
        print(f"restored {len(done)} {verb} from {shown(str(part.manifest))}", file=sys.stderr)
    return 1 if skipped else 0


def _group_line(group) -> str:
    members = "  ".join(
        f"{'*' if m.keeper or m.id in group.kept_with_keeper else ''}{shown(m.path)} "
        f"({m.tier}{' ' + m.transform if m.transform else ''} {m.score:.3f})"
        for m in group.members)
    return f"{group.tier}\t{members}\t# {group.reason}"


def _plan_lines(plan) -> str:
    lines = [f"{plan.tier}: keep {shown(plan.keeper['path'])}{_standing(plan.keeper)}  [{plan.rule}]"]
    for m in plan.move:
        lines.append(f"  move {shown(m['path'])}{_standing(m)}")
        lines += [f"    with {shown(c)}" for c in m.get("companions", [])]
    return "\n".join(lines)


def _standing(member: dict) -> str:
    """' (rated 5, picked)': what the photographer recorded, for the plan's lines."""
    said = [f"rated {member['rating']}" if member.get("rating") not in (None, 0) else "",
            member.get("pick") or ""]
    said = [s for s in said if s]
    return f" ({', '.join(said)})" if said else ""


def _print_histogram(scores) -> None:
    import numpy as np

    # Rounding puts exact copies a hair above 1; anything below 0 lands in the first bin.
    counts, edges = np.histogram(np.clip(scores, 0.0, 1.0), bins=20, range=(0.0, 1.0))
    top = max(int(counts.max()), 1) if len(counts) else 1
    print("nearest-neighbour score distribution (each image's best match):")
    for count, low, high in zip(counts, edges[:-1], edges[1:], strict=False):
        print(f"{low:.2f}-{high:.2f}\t{count}\t{'#' * int(40 * count / top)}")
