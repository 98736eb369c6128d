"""Which job of one run is which job of the other: the keys ``compare`` pairs jobs on.

Jobs are paired on the ``--match`` keys, and always on their runtime
(:mod:`quantlab.harness.runtimes`), in two passes. The first takes the model by
content (its sha256). The second pairs what is left by name: the scheme and the
model's path, as much of its tail as tells apart the files of one name in one run.
Variants folders name every file ``<scheme>.tflite``, so a plan with two folders has
two ``int8.tflite``; when a nightly rebuilds them (new sha256s) they pair as
``a/int8.tflite`` and ``b/int8.tflite``, folder by folder, wherever the checkout
lives. Jobs whose content key is not unique in its run (the same fp32 bytes in both
folders) wait for the name pass; only keys that not even the whole path tells apart
are an error, whose fix is a key added to ``--match``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from quantlab.harness.errors import UserError
from quantlab.harness.runtimes import runtime_of
from quantlab.harness.store import JobEntry

Pairs = list[tuple[JobEntry, JobEntry]]


def path_tail(path: str, depth: int) -> str:
    """The last ``depth`` parts of ``path`` (``a/int8.tflite`` for depth 2)."""
    parts = [p for p in Path(path).parts if p not in ("/", "\\")]
    return "/".join(parts[-depth:])


def _depths(runs: list[list[JobEntry]], group: Callable[[JobEntry], Hashable]
            ) -> dict[int, int]:
    """Per entry (by id), how many path parts tell its file apart from the others of its
    group in its own run; one depth per group, so that the tails line up across runs."""
    groups: dict[Hashable, list[list[JobEntry]]] = {}
    for k, entries in enumerate(runs):
        for e in entries:
            groups.setdefault(group(e), [[] for _ in runs])[k].append(e)
    out: dict[int, int] = {}
    for members in groups.values():
        deepest = max(len(Path(e.job.model.path).parts) for run in members for e in run)
        depth = 1
        while depth < deepest and any(
                len({path_tail(e.job.model.path, depth) for e in run}) < len(run)
                for run in members):
            depth += 1
        for run in members:
            for e in run:
                out[id(e)] = depth
    return out


def display_names(runs: list[list[JobEntry]]) -> dict[int, str]:
    """Per entry (by id), the model as reports name it: ``scheme (file)``, where ``file``
    has as many folders as tell it apart from another file of its name on the same
    device, delegate and threads (``int8 (a/int8.tflite)``)."""
    depths = _depths(runs, lambda e: (e.job.model.scheme, Path(e.job.model.path).name,
                                      e.job.device_id, e.job.delegate, e.job.threads))
    names = {}
    for entries in runs:
        for e in entries:
            name = path_tail(e.job.model.path, depths[id(e)])
            names[id(e)] = f"{e.job.model.scheme} ({name})" if e.job.model.scheme else name
    return names


def _key(entry: JobEntry, keys: tuple[str, ...], model: Any) -> tuple[Any, ...]:
    """The ``keys``' values, and always the runtime: a .pte job is never a .tflite job's pair."""
    j = entry.job
    values = {"model": model, "scheme": j.model.scheme, "device": j.device_id,
              "delegate": j.delegate, "threads": j.threads}
    return (*(values[k] for k in keys), runtime_of(j))


def _index(entries: list[JobEntry], key: Callable[[JobEntry], tuple[Any, ...]]
           ) -> tuple[dict[tuple[Any, ...], JobEntry], list[list[JobEntry]]]:
    """(entries by key where the key is unique in the run, groups sharing a key)."""
    groups: dict[tuple[Any, ...], list[JobEntry]] = {}
    for e in entries:
        groups.setdefault(key(e), []).append(e)
    unique = {k: g[0] for k, g in groups.items() if len(g) == 1}
    return unique, [g for g in groups.values() if len(g) > 1]


def _take(base: list[JobEntry], new: list[JobEntry],
          base_idx: dict[tuple[Any, ...], JobEntry], new_idx: dict[tuple[Any, ...], JobEntry]
          ) -> tuple[Pairs, list[JobEntry], list[JobEntry]]:
    common = [k for k in new_idx if k in base_idx]
    pairs = [(base_idx[k], new_idx[k]) for k in common]
    taken = {id(e) for pair in pairs for e in pair}
    return (pairs, [e for e in base if id(e) not in taken],
            [e for e in new if id(e) not in taken])


def pair_jobs(base: list[JobEntry], new: list[JobEntry], keys: tuple[str, ...],
              run_ids: tuple[str, str]) -> tuple[Pairs, list[JobEntry], list[JobEntry]]:
    """(pairs, baseline jobs left unpaired, new jobs left unpaired) on the match ``keys``.

    A UserError when two jobs of one run share a key that nothing in it tells apart."""
    def by_content(e: JobEntry) -> tuple[Any, ...]:
        return _key(e, keys, e.job.model.sha256)

    base_idx, _ = _index(base, by_content)
    new_idx, _ = _index(new, by_content)
    pairs, base_left, new_left = _take(base, new, base_idx, new_idx)
    if "model" not in keys:
        _refuse(keys, [(run_id, g) for run_id, entries in zip(run_ids, (base, new), strict=True)
                       for g in _index(entries, by_content)[1]])
        return pairs, base_left, new_left
    others = [k for k in keys if k != "model"]
    depths = _depths([base_left, new_left], lambda e: (
        e.job.model.scheme, Path(e.job.model.path).name, *_key(e, tuple(others), None)))

    def by_name(e: JobEntry) -> tuple[Any, ...]:
        return _key(e, keys, (e.job.model.scheme,
                              path_tail(e.job.model.path, depths[id(e)])))

    base_idx, base_dup = _index(base_left, by_name)
    new_idx, new_dup = _index(new_left, by_name)
    _refuse(keys, [(run_ids[0], g) for g in base_dup] + [(run_ids[1], g) for g in new_dup])
    more, base_left, new_left = _take(base_left, new_left, base_idx, new_idx)
    return pairs + more, base_left, new_left


def _refuse(keys: tuple[str, ...], duplicates: list[tuple[str, list[JobEntry]]]) -> None:
    for run_id, group in duplicates:
        raise UserError(
            f"--match {','.join(keys)}: run {run_id} has more than one job for the same key "
            f"({group[0].job.label()} and {group[1].job.label()})",
            hint="add the setting that differs to --match (e.g. delegate or threads)")
