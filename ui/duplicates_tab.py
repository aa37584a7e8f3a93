"""The Duplicates tab: groups with each member's tier, reason, measured quality and the photographer's records,
one-group review with decisions, a rule-based cleanup (the rating guard on unless overridden) with
a preview, apply or mark instead, undo, and threshold calibration. Moves go through
indexer.store.quarantine (manifest first, the store following), marks through
indexer.sidecar_marks (sidecars only, never an image); nothing is deleted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ..indexer.errors import VitsearchError
from ..indexer.sidecar_marks import mark_sidecars
from ..indexer.store.decisions import record_keeper, record_not_duplicates, record_thresholds
from ..indexer.store.quarantine import quarantine_plan, settle_quarantine
from ..indexer.undo import undo_cleanup
from ..search import ImageIndex
from ..search.calibrate import fit_near_threshold, sample_pairs
from ..search.dupes import TIERS, find_duplicates, thresholds
from ..search.resolve import RESOLVE_TIERS, RULES, parse_rules, plan_cleanup, plan_group, plan_marks, summarize
from .quality import QUALITY_HEADERS, quality_cells
from .records import standing, stars
from .refused import refused

__all__ = ["duplicates_tab", "DuplicateActions", "DEFAULT_RULES"]

DEFAULT_RULES = "largest-resolution,largest-file,oldest-capture,has-exif,shortest-path"
# The group's table, each column with its type: numbers stay numbers, so that sorting by a column
# (its header's menu; Gradio sorts in the browser) orders them as numbers. The measured facts come
# before the long reason, so that they show without scrolling sideways.
MEMBER_COLUMNS = (("path", "str"), ("rating", "str"), ("pick", "str"), ("keywords", "str"), ("tier", "str"),
                  ("transform", "str"), ("score", "number"), ("width", "number"), ("height", "number"),
                  ("bytes", "number"), *zip(QUALITY_HEADERS, ("number", "number", "number", "str"), strict=True),
                  ("reason", "str"), ("date", "str"), ("keeper", "str"))
DECISION_WAIT_SECONDS = 5.0  # a write while an index run holds the store: wait, then say busy


def duplicates_tab(index: ImageIndex, thumbs, store_dir, writable: bool = True) -> None:
    """The tab, over `index` for reading and `store_dir` for what it writes (decisions, moves),
    unless not `writable` (serve --read-only)."""
    actions = DuplicateActions(index, thumbs, store_dir, writable)
    with gr.Tab("Duplicates"):
        review = _review_section(*thresholds(index.store))
        cleanup = _cleanup_section()
        calibration = _calibration_section()
        # A textbox: the names of files about to be moved must read exactly as they are.
        outcome = gr.Textbox(label="Outcome", interactive=False, lines=4, max_lines=30, elem_id="dupes-outcome")
        _wire_review(actions, review, outcome)
        _wire_cleanup(actions, review.filters, cleanup, outcome)
        calibration.sample_button.click(actions.sample, None, calibration.pairs)
        calibration.save_button.click(actions.save_thresholds, calibration.pairs, [outcome, review.near])


class DuplicateActions:
    """The tab's handlers: reads through `index`, writes to `store_dir` through the writer side
    (decisions, search.resolve's plan_cleanup and indexer.store.quarantine's verbs)."""

    def __init__(self, index: ImageIndex, thumbs, store_dir, writable: bool = True) -> None:
        self.index, self.thumbs, self.store_dir, self.writable = index, thumbs, store_dir, writable

    def _may_write(self) -> None:
        if not self.writable:
            raise refused("This server is read-only (vitsearch serve --read-only): cleanups and decisions "
                          "are turned off.")

    def find_groups(self, tiers, near, similar, against):
        self.index.refresh()
        groups = _call(find_duplicates, self.index, near=near, similar=similar, tiers=tuple(tiers or RESOLVE_TIERS),
                       against=against.strip() or None)
        labels = [f"{i + 1}. {g.tier} · {len(g.ids)} {'videos' if g.kind == 'video' else 'images'} · "
                  f"{Path(g.paths[0]).name} · {g.reason}"
                  for i, g in enumerate(groups)]
        by_tier: dict[str, int] = {}
        for g in groups:
            by_tier[g.tier] = by_tier.get(g.tier, 0) + 1
        summary = f"{len(groups)} group{'s' if len(groups) != 1 else ''}" + (
            " · " + ", ".join(f"{t}: {n}" for t, n in by_tier.items()) if by_tier else "")
        return groups, gr.update(choices=labels, value=labels[0] if labels else None), summary

    def show_group(self, groups, label):
        if not label:
            return [], [], None
        group = groups[int(label.split(".")[0]) - 1]
        rows = self.index.describe(group.ids)
        items, table = [], []
        for member in group.members:
            row = said = rows[member.id]
            thumb = self.thumbs.get(member.path, row["size"], row["mtime_ns"])
            items.append((thumb, _member_caption(group, member, row, said)))
            table.append([member.path, stars(said.get("rating")), said.get("pick") or "",
                          ", ".join(said.get("keywords") or ()), member.tier, member.transform or "",
                          round(member.score, 3), row["width"], row["height"], row["size"],
                          *quality_cells(row, member.suspected_upscale), member.reason, row["date"],
                          "keep" if member.keeper else ""])
        return items, table, group

    def keep_selected(self, group, evt_index):
        self._may_write()
        if group is None or evt_index is None:
            raise refused("Pick a group and click the image to keep.")
        _call(record_keeper, self.store_dir, group.ids[evt_index], wait=DECISION_WAIT_SECONDS)
        return f"Recorded: keep {Path(group.paths[evt_index]).name}"

    def not_duplicates(self, group):
        self._may_write()
        if group is None:
            raise refused("Pick a group first.")
        _call(record_not_duplicates, self.store_dir, list(group.ids), wait=DECISION_WAIT_SECONDS)
        return "Recorded: these images are not duplicates; later runs keep them apart."

    def quarantine_group(self, group, dry_run: bool):
        if group is None:
            raise refused("Pick a group first.")
        plans = _call(plan_group, self.index, group)
        keeper = group.paths[group.ids.index(group.keeper)]
        if not dry_run:
            self._may_write()
        if dry_run:
            lines = "\n".join(f"- {m['path']}" for p in plans for m in p.move)
            count = sum(len(p.move) for p in plans)
            return (f"Dry run: would move {count} file(s) into the quarantine, keeping {keeper}:\n{lines}"
                    + _left_alone(plans))
        return self._apply_plans(plans)

    def preview(self, *choices):
        """The plan of `choices` (the filters, rules, protected folders, override ratings): what
        moves, with the files that go along, and where the rating guard chose the keeper."""
        plans = self._plans(*choices)
        table = [[p.tier, p.keeper["path"] + standing(p.keeper), len(p.move), _moving_lines(p), p.rule,
                  p.guard or ""] for p in plans[:500]]
        return summarize(plans) + _guard_notes(plans) + _left_alone(plans), table

    def apply(self, *choices, merge=False):
        """Move the plan's files into the quarantine; with `merge`, the keepers' sidecars also get
        their group's keywords and best rating (undone with the move)."""
        self._may_write()
        settled = _call(settle_quarantine, self.store_dir, wait=DECISION_WAIT_SECONDS)
        plans = self._plans(*choices)
        notes = "".join(f"\n{note}" for note in settled)
        if not plans:
            return "Nothing to move." + _left_alone(plans) + notes, []
        return self._apply_plans(plans, merge=bool(merge)) + notes, []

    def mark(self, *choices, merge=False):
        """Instead of moving: a reject and a keyword naming the keeper in each other file's XMP
        sidecar (created if absent), with `merge` the keepers' too; no image is written."""
        self._may_write()
        plans = self._plans(*choices)
        marks = plan_marks(plans, reject=True, merge=bool(merge))
        if not marks:
            return "Nothing to mark." + _left_alone(plans), []
        report = _call(mark_sidecars, self.store_dir, marks, wait=DECISION_WAIT_SECONDS)
        return _marked_text(report) + " Undo puts them back." + _left_alone(plans), []

    def undo(self):
        """Undo the latest cleanup, whichever kind: files moved, sidecars marked, or both."""
        self._may_write()
        report = _call(undo_cleanup, self.store_dir, wait=DECISION_WAIT_SECONDS)
        self.index.refresh()
        return _undone_text(report)

    def sample(self):
        self.index.refresh()
        return [[p.score, p.path_a, p.path_b, ""] for p in sample_pairs(self.index)]

    def save_thresholds(self, table):
        self._may_write()
        rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
        labels = [(float(r[0]), str(r[3]).strip().lower().startswith("y")) for r in rows
                  if str(r[3]).strip().lower()[:1] in ("y", "n")]
        near = fit_near_threshold(labels)
        if near is None:
            raise refused("Label at least one pair 'yes' and one 'no' in the last column.")
        _call(record_thresholds, self.store_dir, near=near, labels=len(labels), wait=DECISION_WAIT_SECONDS)
        return f"Near-duplicate threshold for this store: {near:.4f} (from {len(labels)} labels).", near

    def _plans(self, tiers, near, similar, against, rules_text, protect_text, override_ratings=False):
        self.index.refresh()
        rules = _call(parse_rules, rules_text or DEFAULT_RULES)
        protect = [line.strip() for line in (protect_text or "").splitlines() if line.strip()]
        return _call(plan_cleanup, self.index, rules, tiers=tiers, near=near, similar=similar,
                     against=against.strip() or None, protect=protect, override_ratings=bool(override_ratings))

    def _apply_plans(self, plans, merge: bool = False):
        keepers = plans.keepers()
        if not keepers:
            return "Nothing to move." + _left_alone(plans)
        report = _call(quarantine_plan, self.store_dir, keepers, wait=DECISION_WAIT_SECONDS)
        self.index.refresh()
        text = _moved_text(report)
        marks = plan_marks(plans, reject=False, merge=True) if merge else []
        if marks:  # linked to the move's manifest: one undo puts back both
            text += "\n" + _marked_text(_call(mark_sidecars, self.store_dir, marks, with_apply=report.manifest,
                                               wait=DECISION_WAIT_SECONDS))
        return text + _left_alone(plans)


def _review_section(near_default: float, similar_default: float) -> SimpleNamespace:
    """The filters, the groups found and one group side by side with its decision buttons."""
    with gr.Row():
        tiers = gr.CheckboxGroup(list(TIERS), value=list(RESOLVE_TIERS), label="Tiers", elem_id="dupes-tiers")
        near = gr.Slider(0.5, 1.0, value=near_default, step=0.005, label="Near-duplicate threshold")
        similar = gr.Slider(0.5, 1.0, value=similar_default, step=0.005, label="Similar threshold")
        against = gr.Textbox(label="Only groups crossing this folder (optional)", elem_id="dupes-against")
    find_button = gr.Button("Find duplicate groups", variant="primary", elem_id="find-dupes")
    summary = gr.Textbox(label="Groups", interactive=False, elem_id="dupes-summary")
    group_pick = gr.Dropdown(choices=[], label="Group", elem_id="group-pick")
    compare = gr.Gallery(label="Side by side", columns=4, height="auto", format="jpeg", elem_id="dupes-gallery")
    # What the photographer recorded beside the path: the columns after it scroll out of sight.
    table = gr.Dataframe(headers=[name for name, _ in MEMBER_COLUMNS], datatype=[kind for _, kind in MEMBER_COLUMNS],
                         interactive=False, wrap=True, elem_id="dupes-table")
    with gr.Row():
        keep_button = gr.Button("Keep the selected image")
        not_dupes_button = gr.Button("Not duplicates")
        dry_run_button = gr.Button("Quarantine the others (dry run)")
        quarantine_button = gr.Button("Quarantine the others", variant="stop")
    return SimpleNamespace(
        filters=[tiers, near, similar, against], near=near, find_button=find_button, summary=summary,
        group_pick=group_pick, compare=compare, table=table, keep_button=keep_button,
        not_dupes_button=not_dupes_button, dry_run_button=dry_run_button, quarantine_button=quarantine_button)


def _cleanup_section() -> SimpleNamespace:
    """Clean up many groups by rules: the rules, protected folders, the rating guard, preview,
    apply (move) or mark in sidecars, and undo."""
    with gr.Accordion("Clean up many groups by rules", open=True):
        with gr.Row():
            rules = gr.Textbox(value=DEFAULT_RULES, label="Keeper rules, in order (ties fall to the next)",
                               info=_rules_help(), elem_id="cleanup-rules")
            protect = gr.Textbox(label="Protected folders (one per line; never moved, kept first)", lines=2,
                                 elem_id="cleanup-protect")
        with gr.Row():
            override = gr.Checkbox(False, elem_id="cleanup-override", label="Override ratings: the rules alone "
                                   "choose keepers (by default the best-rated member, a picked one first, is kept "
                                   "and nothing rated above its keeper, or picked, moves)")
            merge = gr.Checkbox(False, elem_id="cleanup-merge", label="Merge metadata: each keeper's sidecar "
                                "gets its group's keywords and best rating")
        with gr.Row():
            preview_button = gr.Button("Preview cleanup", elem_id="cleanup-preview")
            apply_button = gr.Button("Apply cleanup (move to quarantine)", variant="stop", elem_id="cleanup-apply")
            mark_button = gr.Button("Mark in XMP sidecars", elem_id="cleanup-mark")
            undo_button = gr.Button("Undo last cleanup", elem_id="cleanup-undo")
        preview_text = gr.Textbox(label="Preview", interactive=False, max_lines=30, elem_id="cleanup-summary")
        plan_table = gr.Dataframe(headers=["tier", "keep", "files to move", "move (with the files that go along)",
                                           "rule", "rating guard"], interactive=False, wrap=True,
                                  elem_id="cleanup-plan")
    return SimpleNamespace(rules=rules, protect=protect, override=override, merge=merge,
                           preview_button=preview_button, apply_button=apply_button, mark_button=mark_button,
                           undo_button=undo_button, preview_text=preview_text, plan_table=plan_table)


def _calibration_section() -> SimpleNamespace:
    with gr.Accordion("Calibrate thresholds for this store", open=False):
        sample_button = gr.Button("Sample pairs to label", elem_id="calibrate-sample")
        pairs = gr.Dataframe(headers=["score", "image A", "image B", "same photo? (yes/no)"], interactive=True,
                             wrap=True, elem_id="calibrate-pairs")
        save_button = gr.Button("Save thresholds from my labels", elem_id="calibrate-save")
    return SimpleNamespace(sample_button=sample_button, pairs=pairs, save_button=save_button)


def _wire_review(actions: DuplicateActions, review: SimpleNamespace, outcome) -> None:
    groups_state, group_state, picked_state = gr.State([]), gr.State(None), gr.State(None)
    review.find_button.click(actions.find_groups, review.filters, [groups_state, review.group_pick, review.summary])
    review.group_pick.change(actions.show_group, [groups_state, review.group_pick],
                             [review.compare, review.table, group_state])
    review.compare.select(_selected_index, None, picked_state)
    review.keep_button.click(actions.keep_selected, [group_state, picked_state], outcome)
    review.not_dupes_button.click(actions.not_duplicates, group_state, outcome)
    review.dry_run_button.click(lambda g: actions.quarantine_group(g, True), group_state, outcome)
    review.quarantine_button.click(lambda g: actions.quarantine_group(g, False), group_state, outcome)


def _wire_cleanup(actions: DuplicateActions, filters: list, cleanup: SimpleNamespace, outcome) -> None:
    inputs = [*filters, cleanup.rules, cleanup.protect, cleanup.override]
    cleanup.preview_button.click(actions.preview, inputs, [cleanup.preview_text, cleanup.plan_table])
    cleanup.apply_button.click(lambda *c: actions.apply(*c[:-1], merge=c[-1]), [*inputs, cleanup.merge],
                               [outcome, cleanup.plan_table], api_name="apply")
    cleanup.mark_button.click(lambda *c: actions.mark(*c[:-1], merge=c[-1]), [*inputs, cleanup.merge],
                              [outcome, cleanup.plan_table], api_name="mark")
    cleanup.undo_button.click(actions.undo, None, outcome)


def _rules_help() -> str:
    """Every rule search.resolve knows, for the rules box: the measured-quality ones among them."""
    return "Rules: " + ", ".join([*RULES, "prefer:FOLDER", "avoid:FOLDER"]) + "."


def _member_caption(group, member, row, said: dict) -> str:
    star = "★ keep · " if member.keeper else ("★ keep (pair) · " if member.id in group.kept_with_keeper else "")
    relation = "" if member.keeper else f"{member.tier}{' ' + member.transform if member.transform else ''} · "
    return (f"{star}{relation}{Path(member.path).name}{standing(said)} · {row['width']}x{row['height']} · "
            f"{row['size'] // 1024} KB · {row['date'] or 'no date'} · {row['camera'] or 'no camera'}")


def _moving_lines(plan) -> str:
    """Each file that would move, with what the photographer recorded and the files that go along."""
    lines = []
    for m in plan.move:
        lines.append(m["path"] + standing(m))
        lines += [f"  + {c}" for c in m.get("companions", [])]
    return "\n".join(lines)


def _guard_notes(plans) -> str:
    return "".join(f"\nnote: {p.guard}" for p in plans if p.guard)


def _marked_text(report) -> str:
    problems = "".join(f"\nnot marked: {path}: {why}" for path, why in report.skipped)
    created = sum(w.created for w in report.written)
    return (f"Marked {len(report.written)} sidecar(s) ({created} new); image files untouched; the page shows the "
            f"marks after the next index run.{problems}")


def _undone_text(report) -> str:
    lines = []
    if report.moves is not None:
        lines.append(f"Restored {len(report.moves.moved)} file(s) to where they were.")
        lines += [f"not restored: {path}: {why}" for path, why in report.moves.skipped]
    if report.marks is not None:
        lines.append(f"Restored {len(report.marks.written)} sidecar(s) as they were (the ones vitsearch "
                     "created removed).")
        lines += [f"not restored: {path}: {why}" for path, why in report.marks.skipped]
    return "\n".join(lines)


def _moved_text(report) -> str:
    problems = "".join(f"\nnot moved: {path}: {why}" for path, why in report.skipped)
    if report.manifest is None:
        return f"Moved nothing into the quarantine.{problems}"
    return (f"Moved {len(report.moved)} file(s), {report.bytes:,} bytes, into the quarantine; manifest "
            f"{report.manifest} (undo available).{problems}")


def _left_alone(plans) -> str:
    return "".join(f"\nleft alone: the group of {keeper}: {why}" for keeper, why in plans.skipped)


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except VitsearchError as e:
        raise refused(str(e)) from None


def _selected_index(evt: gr.SelectData) -> int:
    return evt.index
