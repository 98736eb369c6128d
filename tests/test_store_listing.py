"""harness/store/listing.py: the paginated read models the served dashboard browses with —
runs by filter a page at a time, the devices the store has met, the jobs running now, the
series history draws, and a tag's finished runs before a moment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fixtures.serve.store import ServeStore, build

from quantlab.harness.errors import UserError
from quantlab.harness.store import Store
from quantlab.harness.store.listing import (
    RunFilter,
    earlier_runs,
    known_devices,
    running_jobs,
    runs_page,
    series_keys,
)


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> ServeStore:
    return build(tmp_path_factory.mktemp("listing") / "results")


@pytest.fixture
def conn(held: ServeStore) -> Iterator[sa.Connection]:
    store = Store.open(str(held.folder))
    with store.engine.connect() as connection:
        yield connection
    store.close()


def test_runs_page_pages_through_newest_first_with_the_total(conn: sa.Connection,
                                                             held: ServeStore) -> None:
    everything = [held.running, *reversed(held.nights)]
    seen = []
    for offset in (0, 3, 6):
        rows, total = runs_page(conn, RunFilter(), 3, offset)
        assert total == len(everything)
        seen += [r["run_id"] for r in rows]
    assert seen == everything
    first = runs_page(conn, RunFilter(), 1, 0)[0][0]
    assert first["status"] == "running" and first["tags"] == ["nightly"]
    assert first["devices"] == ["pixel-8", "sim"]


def test_runs_page_filters_by_job_tag_status_and_day(conn: sa.Connection, held: ServeStore) -> None:
    def ids(**kw: str) -> list[str]:
        rows, total = runs_page(conn, RunFilter(**kw), 50, 0)
        assert total == len(rows)
        return [r["run_id"] for r in rows]

    nights = held.nights
    assert ids(since="2026-05-03", until="2026-05-05") == [nights[4], nights[3], nights[2]]
    assert ids(until="2026-05-02T02:00:00+00:00") == [nights[1], nights[0]]  # a time: included
    assert ids(model="fp16") == [nights[5]]  # the only run with the fp16 job
    assert ids(model="int8 (model-int8.tflite)", device="pixel-8", since="2026-05-07") == \
        [held.running, nights[6]]
    assert ids(tag="git", status="done", since="2026-05-06") == [nights[6], nights[5]]
    assert ids(delegate="gpu") == []
    with pytest.raises(UserError, match=r"since '2026-5-1': not a date or time"):
        ids(since="2026-5-1")


def test_page_size_is_bounded(conn: sa.Connection) -> None:
    for limit, offset in ((0, 0), (501, 0), (10, -1)):
        with pytest.raises(UserError, match=r"out of range|negative"):
            runs_page(conn, RunFilter(), limit, offset)


def test_known_devices_carry_their_newest_snapshot_and_run(conn: sa.Connection,
                                                           held: ServeStore) -> None:
    found = {d["device_id"]: d for d in known_devices(conn)}
    assert set(found) == {"pixel-8", "sim"}
    phone = found["pixel-8"]
    assert phone["runs"] == 8 and phone["last_run"] == held.running
    assert phone["first_seen"].startswith("2026-05-01") and phone["platform"] == "android"
    assert phone["info"]["soc"] == "Tensor G3" and phone["info"]["health"]["battery_pct"] == 81


def test_running_jobs_are_those_of_running_runs(conn: sa.Connection, held: ServeStore) -> None:
    [job] = running_jobs(conn)
    assert job["run_id"] == held.running and job["device_id"] == "pixel-8"
    assert job["label"].startswith("model-fp32.tflite · pixel-8 · xnnpack")


def test_series_keys_name_models_as_history_does(conn: sa.Connection) -> None:
    rows, total = series_keys(conn, RunFilter(), 50, 0)
    assert total == 6
    assert [(s["model"], s["device"]) for s in rows][:3] == [
        ("fp16 (model-fp16.tflite)", "pixel-8"), ("fp32 (model-fp32.tflite)", "pixel-8"),
        ("fp32 (model-fp32.tflite)", "sim")]
    rows, total = series_keys(conn, RunFilter(model="int8", device="sim"), 50, 0)
    assert total == 1 and rows[0]["runs"] == 8 and rows[0]["threads"] == 1
    rows, total = series_keys(conn, RunFilter(since="2026-05-07"), 2, 2)
    assert total == 4 and len(rows) == 2  # fp16 and int8-io ran on night 6 only
    assert series_keys(conn, RunFilter(), 50, 0, last=2)[1] == 4  # the newest two runs
    rows, total = series_keys(conn, RunFilter(), 50, 0, last=3)  # night 6 is among them
    assert total == 6 and {s["runs"] for s in rows} == {1, 3}


def test_earlier_runs_are_the_tags_finished_runs_before(conn: sa.Connection,
                                                         held: ServeStore) -> None:
    nights = held.nights
    before_five = "2026-05-05T02:00:00.000+00:00"
    assert earlier_runs(conn, "nightly", before_five, 30) == nights[3::-1]
    assert earlier_runs(conn, "git", before_five, 2) == [nights[3], nights[2]]
    assert earlier_runs(conn, "nightly", "2026-05-01", 30) == []

