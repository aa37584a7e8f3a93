"""The Duplicates tab: groups with each member's tier and reason, one-group review with
decisions, a rule-based cleanup with a preview count, apply and undo, and threshold calibration.
Moves go through indexer.store.quarantine (manifest first, the store following); nothing is deleted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ..indexer.errors import VitsearchError
from ..indexer.store.decisions import record_keeper, record_not_duplicates, record_thresholds
from ..indexer.store.quarantine import quarantine_plan, settle_quarantine, undo_quarantine
from ..search import ImageIndex
from ..search.calibrate import fit_near_threshold, sample_pairs
from ..search.dupes import TIERS, find_duplicates, thresholds
from ..search.resolve import RESOLVE_TIERS, parse_rules, plan_cleanup, plan_group, summarize
from .refused import refused

__all__ = ["duplicates_tab", "DuplicateActions", "DEFAULT_RULES"]

DEFAULT_RULES = "largest-resolution,largest-file,oldest-capture,has-exif,shortest-path"
DECISION_WAIT_SECONDS = 5.0  # a write while an index run holds the store: wait, then say busy


def duplicates_tab(index: ImageIndex, thumbs, store_dir) -> None:
    """The tab, over `index` for reading and `store_dir` for what it writes (decisions, moves)."""
    actions = DuplicateActions(index, thumbs, store_dir)
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

    def __init__(self, index: ImageIndex, thumbs, store_dir) -> None:
        self.index, self.thumbs, self.store_dir = index, thumbs, store_dir

    def find_groups(self, tiers, near, similar, against):
        self.index.refresh()
        groups = _call(find_duplicates, self.index, near=near, similar=similar, tiers=tuple(tiers or RESOLVE_TIERS),
                       against=against.strip() or None)
        labels = [f"{i + 1}. {g.tier} · {len(g.ids)} images · {Path(g.paths[0]).name} · {g.reason}"
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
            row = rows[member.id]
            thumb = self.thumbs.get(member.path, row["size"], row["mtime_ns"])
            items.append((thumb, _member_caption(group, member, row)))
            table.append([member.path, member.tier, member.transform or "", f"{member.score:.3f}", member.reason,
                          row["width"], row["height"], row["size"], row["date"], "keep" if member.keeper else ""])
        return items, table, group

    def keep_selected(self, group, evt_index):
        if group is None or evt_index is None:
            raise refused("Pick a group and click the image to keep.")
        _call(record_keeper, self.store_dir, group.ids[evt_index], wait=DECISION_WAIT_SECONDS)
        return f"Recorded: keep {Path(group.paths[evt_index]).name}"

    def not_duplicates(self, group):
        if group is None:
            raise refused("Pick a group first.")
        _call(record_not_duplicates, self.store_dir, list(group.ids), wait=DECISION_WAIT_SECONDS)
        return "Recorded: these images are not duplicates; later runs keep them apart."

    def quarantine_group(self, group, dry_run: bool):
        if group is None:
            raise refused("Pick a group first.")
        plans = _call(plan_group, self.index, group)
        keeper = group.paths[group.ids.index(group.keeper)]
        if dry_run:
            lines = "\n".join(f"- {m['path']}" for p in plans for m in p.move)
            count = sum(len(p.move) for p in plans)
            return (f"Dry run: would move {count} file(s) into the quarantine, keeping {keeper}:\n{lines}"
                    + _left_alone(plans))
        return self._apply_plans(plans)

    def preview(self, tiers, near, similar, against, rules_text, protect_text):
        plans = self._plans(tiers, near, similar, against, rules_text, protect_text)
        table = [[p.tier, p.keeper["path"], len(p.move), "\n".join(m["path"] for m in p.move), p.rule]
                 for p in plans[:500]]
        return summarize(plans) + _left_alone(plans), table

    def apply(self, tiers, near, similar, against, rules_text, protect_text):
        settled = _call(settle_quarantine, self.store_dir, wait=DECISION_WAIT_SECONDS)
        plans = self._plans(tiers, near, similar, against, rules_text, protect_text)
        notes = "".join(f"\n{note}" for note in settled)
        if not plans:
            return "Nothing to move." + _left_alone(plans) + notes, []
        return self._apply_plans(plans) + notes, []

    def undo(self):
        report = _call(undo_quarantine, self.store_dir, wait=DECISION_WAIT_SECONDS)
        self.index.refresh()
        problems = "".join(f"\nnot restored: {path}: {why}" for path, why in report.skipped)
        return f"Restored {len(report.moved)} file(s) to where they were.{problems}"

    def sample(self):
        self.index.refresh()
        return [[p.score, p.path_a, p.path_b, ""] for p in sample_pairs(self.index)]

    def save_thresholds(self, table):
        rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
        labels = [(float(r[0]), str(r[3]).strip().lower().startswith("y")) for r in rows
                  if str(r[3]).strip().lower()[:1] in ("y", "n")]
        near = fit_near_threshold(labels)
        if near is None:
            raise refused("Label at least one pair 'yes' and one 'no' in the last column.")
        _call(record_thresholds, self.store_dir, near=near, labels=len(labels), wait=DECISION_WAIT_SECONDS)
        return f"Near-duplicate threshold for this store: {near:.4f} (from {len(labels)} labels).", near

    def _plans(self, tiers, near, similar, against, rules_text, protect_text):
        self.index.refresh()
        rules = _call(parse_rules, rules_text or DEFAULT_RULES)
        protect = [line.strip() for line in (protect_text or "").splitlines() if line.strip()]
        return _call(plan_cleanup, self.index, rules, tiers=tiers, near=near, similar=similar,
                     against=against.strip() or None, protect=protect)

    def _apply_plans(self, plans):
        keepers = plans.keepers()
        if not keepers:
            return "Nothing to move." + _left_alone(plans)
        report = _call(quarantine_plan, self.store_dir, keepers, wait=DECISION_WAIT_SECONDS)
        self.index.refresh()
        return _moved_text(report) + _left_alone(plans)


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
    table = gr.Dataframe(headers=["path", "tier", "transform", "score", "reason", "width", "height", "bytes",
                                  "date", "keeper"], interactive=False, wrap=True, elem_id="dupes-table")
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
    """Clean up many groups by rules: the rules, protected folders, preview, apply and undo."""
    with gr.Accordion("Clean up many groups by rules", open=True):
        with gr.Row():
            rules = gr.Textbox(value=DEFAULT_RULES, label="Keeper rules, in order (ties fall to the next)",
                               elem_id="cleanup-rules")
            protect = gr.Textbox(label="Protected folders (one per line; never moved, kept first)", lines=2,
                                 elem_id="cleanup-protect")
        with gr.Row():
            preview_button = gr.Button("Preview cleanup", elem_id="cleanup-preview")
            apply_button = gr.Button("Apply cleanup (move to quarantine)", variant="stop", elem_id="cleanup-apply")
            undo_button = gr.Button("Undo last quarantine", elem_id="cleanup-undo")
        preview_text = gr.Textbox(label="Preview", interactive=False, elem_id="cleanup-summary")
        plan_table = gr.Dataframe(headers=["tier", "keep", "files to move", "move", "rule"], interactive=False,
                                  wrap=True, elem_id="cleanup-plan")
    return SimpleNamespace(rules=rules, protect=protect, preview_button=preview_button, apply_button=apply_button,
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
    inputs = [*filters, cleanup.rules, cleanup.protect]
    cleanup.preview_button.click(actions.preview, inputs, [cleanup.preview_text, cleanup.plan_table])
    cleanup.apply_button.click(actions.apply, inputs, [outcome, cleanup.plan_table])
    cleanup.undo_button.click(actions.undo, None, outcome)


def _member_caption(group, member, row) -> str:
    star = "★ keep · " if member.keeper else ("★ keep (pair) · " if member.id in group.kept_with_keeper else "")
    relation = "" if member.keeper else f"{member.tier}{' ' + member.transform if member.transform else ''} · "
    return (f"{star}{relation}{Path(member.path).name} · {row['width']}x{row['height']} · "
            f"{row['size'] // 1024} KB · {row['date'] or 'no date'} · {row['camera'] or 'no camera'}")


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
