"""The bench's measuring code on synthetic data: /proc parsing, process-tree CPU, percentiles.

The bench's figures are only as honest as these functions, so they are specified here without
any real process or clock.
"""

from __future__ import annotations

import math

import pytest

from bench.measure import (
    CLOCK_TICKS_PER_S,
    ProcStat,
    Window,
    descendants,
    median,
    parse_stat,
    parse_status_kib,
    peak_rss_bytes,
    percentile,
    tree_ticks,
)
from bench.recorder import HandlerSpec, parse_records, record_line


def stat_line(
    pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0
) -> str:
    """A /proc/<pid>/stat line with the fields the kernel prints, in order."""
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime), str(cutime), str(cstime)]
    fields += ["20", "0", "1", "0", "123", "456", "789"]
    return f"{pid} ({comm}) " + " ".join(fields)


def stats(*rows: ProcStat) -> dict[int, ProcStat]:
    return {r.pid: r for r in rows}


class TestParseStat:
    def test_reads_pid_ppid_and_the_four_cpu_fields(self) -> None:
        st = parse_stat(stat_line(42, "python", 7, utime=150, stime=30, cutime=5, cstime=2))
        assert st == ProcStat(pid=42, ppid=7, utime=150, stime=30, cutime=5, cstime=2)
        assert st.ticks == 187

    @pytest.mark.parametrize("comm", ["a b", "x) (y", "celery: worker)", ") )"])
    def test_command_names_with_spaces_and_parentheses_do_not_shift_fields(self, comm: str) -> None:
        st = parse_stat(stat_line(9, comm, 1, utime=11, stime=22, cutime=33, cstime=44))
        assert (st.pid, st.ppid, st.utime, st.stime, st.cutime, st.cstime) == (9, 1, 11, 22, 33, 44)


class TestProcessTreeCpu:
    TREE = stats(
        ProcStat(1, 0, 1000, 1000, 0, 0),  # init: not ours
        ProcStat(100, 1, 50, 10, 0, 0),  # the contender's root (engine parent)
        ProcStat(101, 100, 5, 1, 0, 0),  # zygote
        ProcStat(102, 101, 300, 20, 0, 0),  # worker
        ProcStat(103, 101, 280, 25, 0, 0),  # worker
        ProcStat(200, 1, 400, 100, 0, 0),  # the server: a separate tree
    )

    def test_descendants_follow_parent_links_to_any_depth(self) -> None:
        assert descendants(100, self.TREE) == [100, 101, 102, 103]

    def test_a_process_that_is_gone_has_no_tree(self) -> None:
        assert descendants(999, self.TREE) == []

    def test_tree_cpu_counts_every_process_of_the_tree_and_nothing_else(self) -> None:
        assert tree_ticks([100], self.TREE) == 60 + 6 + 320 + 305
        assert tree_ticks([200], self.TREE) == 500

    def test_overlapping_roots_count_each_process_once(self) -> None:
        assert tree_ticks([100, 101], self.TREE) == tree_ticks([100], self.TREE)

    def test_a_child_reaped_inside_the_window_is_counted_once_through_its_parent(self) -> None:
        before = stats(ProcStat(10, 1, 100, 0, 0, 0), ProcStat(11, 10, 40, 0, 0, 0))
        # the child used 25 more ticks, exited and was reaped: its total (65) moved to cutime
        after = stats(ProcStat(10, 1, 120, 0, 65, 0))
        assert tree_ticks([10], after) - tree_ticks([10], before) == 20 + 25

    def test_a_child_born_and_reaped_inside_the_window_is_counted(self) -> None:
        before = stats(ProcStat(10, 1, 100, 0, 0, 0))
        after = stats(ProcStat(10, 1, 100, 0, 30, 7))
        assert tree_ticks([10], after) - tree_ticks([10], before) == 37

    def test_a_delta_is_the_trees_cpu_between_two_snapshots(self) -> None:
        from bench.measure import cpu_delta_s

        before = stats(ProcStat(10, 1, 100, 0, 0, 0), ProcStat(11, 10, 50, 0, 0, 0))
        after = stats(ProcStat(10, 1, 150, 0, 0, 0), ProcStat(11, 10, 70, 0, 0, 0))
        assert cpu_delta_s([10], before, after) == pytest.approx(70 / CLOCK_TICKS_PER_S)

    def test_no_delta_when_the_root_exited_or_restarted(self) -> None:
        from bench.measure import cpu_delta_s

        before = stats(ProcStat(10, 1, 100, 0, 0, 0))
        assert cpu_delta_s([10], before, stats(ProcStat(12, 1, 5, 0, 0, 0))) is None
        assert cpu_delta_s([10], {}, before) is None
        assert cpu_delta_s([], before, before) is None

    def test_no_delta_when_cpu_left_the_tree_unaccounted(self) -> None:
        """An auto-reaped child takes its CPU with it: a negative total is not a figure."""
        from bench.measure import cpu_delta_s

        before = stats(ProcStat(10, 1, 100, 0, 0, 0), ProcStat(11, 10, 500, 0, 0, 0))
        after = stats(ProcStat(10, 1, 120, 0, 0, 0))
        assert cpu_delta_s([10], before, after) is None


class TestMemory:
    STATUS = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"

    def test_status_values_are_read_in_kib(self) -> None:
        assert parse_status_kib(self.STATUS, "VmHWM") == 51200
        assert parse_status_kib(self.STATUS, "VmSwap") == 0

    def test_peak_rss_sums_the_processes_and_skips_vanished_ones(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        for pid, hwm in ((5, 1000), (6, 2000)):
            (tmp_path / str(pid)).mkdir()
            (tmp_path / str(pid) / "status").write_text(f"VmHWM:\t{hwm} kB\n")
        assert peak_rss_bytes([5, 6, 7], proc=tmp_path) == 3000 * 1024


class TestPercentiles:
    def test_linear_interpolation_between_closest_ranks_as_numpy_does(self) -> None:
        values = [1.0, 2.0, 3.0, 4.0]
        assert percentile(values, 0) == 1.0
        assert percentile(values, 100) == 4.0
        assert percentile(values, 50) == 2.5
        assert percentile(values, 25) == pytest.approx(1.75)

    def test_order_of_input_does_not_matter(self) -> None:
        assert percentile([9, 1, 5, 3, 7], 50) == 5
        assert percentile(list(range(100, 0, -1)), 99) == pytest.approx(99.01)

    def test_a_single_sample_is_every_percentile(self) -> None:
        assert percentile([7.5], 1) == percentile([7.5], 99) == 7.5

    def test_no_samples_gives_nan_not_an_error(self) -> None:
        assert math.isnan(percentile([], 50))

    @pytest.mark.parametrize("q", [-1, 100.5])
    def test_out_of_range_percentile_is_refused(self, q: float) -> None:
        with pytest.raises(ValueError):
            percentile([1.0], q)

    def test_median_leaves_out_failed_runs(self) -> None:
        assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
        assert math.isnan(median([math.nan]))


class TestWindow:
    def test_rates_and_costs_per_message(self) -> None:
        w = Window(seconds=2.0, messages=1000, client_cpu_s=0.5, server_cpu_s=1.5)
        assert w.msgs_per_s == 500
        assert w.client_us_per_msg == 500
        assert w.server_us_per_msg == 1500
        assert w.client_cores == 0.25
        assert w.server_cores == 0.75

    def test_an_unseen_server_has_no_cpu_figure(self) -> None:
        w = Window(seconds=1.0, messages=10, client_cpu_s=0.1, server_cpu_s=None)
        assert math.isnan(w.server_us_per_msg) and math.isnan(w.server_cores)


class TestRecords:
    def test_records_are_fixed_size_and_read_back_in_order(self) -> None:
        data = record_line(3, 1_700_000_000_000_000_000) + record_line(12, 5)
        assert len(data) == 64
        assert parse_records(data) == [(3, 1_700_000_000_000_000_000), (12, 5)]

    def test_a_torn_last_record_is_ignored(self) -> None:
        data = record_line(1, 10) + record_line(2, 20)[:17]
        assert parse_records(data) == [(1, 10)]

    @pytest.mark.parametrize(
        ("text", "spec"),
        [
            ("noop", HandlerSpec("noop")),
            ("cpu:5", HandlerSpec("cpu", 5)),
            ("sleep:0.5", HandlerSpec("sleep", 0.5)),
        ],
    )
    def test_handler_specs(self, text: str, spec: HandlerSpec) -> None:
        assert HandlerSpec.parse(text) == spec

    @pytest.mark.parametrize("text", ["", "cpu", "cpu:x", "cpu:-1", "noop:3", "io:5"])
    def test_bad_handler_specs_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            HandlerSpec.parse(text)


def run_row(
    contender: str, status: str = "ok", rate: float = 100.0, cpu_us: float = 50.0, **kw: object
) -> dict[str, object]:
    row: dict[str, object] = {
        "server": "s",
        "contender": contender,
        "label": contender,
        "workers": 2,
        "handler": "noop",
        "run": 0,
        "status": status,
        "error": "" if status == "ok" else "exited with code 1",
        "msgs_per_s": rate if status == "ok" else math.nan,
        "client_us_per_msg": cpu_us if status == "ok" else math.nan,
        "client_cores": 0.5,
        "server_us_per_msg": 10.0,
        "server_cores": 0.2,
        "peak_rss_mb": 50.0,
        "processes": 1,
        "duplicates": 0,
        "latency_ms": [1.0, 2.0, 3.0],
    }
    row.update(kw)
    return row


class TestSummaries:
    def test_medians_over_runs_and_ratios_to_goraxfast(self) -> None:
        from bench.report import summarize

        runs = [run_row("goraxfast-fast", rate=r, cpu_us=40.0) for r in (90.0, 100.0, 130.0)]
        runs += [run_row("other", rate=r, cpu_us=160.0) for r in (20.0, 25.0, 60.0)]
        rows = {r["contender"]: r for r in summarize(runs)}
        assert rows["goraxfast-fast"]["msgs_per_s"] == 100.0
        assert (
            rows["goraxfast-fast"]["msgs_per_s_min"],
            rows["goraxfast-fast"]["msgs_per_s_max"],
        ) == (
            90.0,
            130.0,
        )
        assert rows["other"]["x_throughput"] == 0.25
        assert rows["other"]["x_cpu"] == 4.0

    def test_latency_percentiles_pool_the_samples_of_all_runs(self) -> None:
        from bench.report import summarize

        runs = [
            run_row("goraxfast-fast", latency_ms=[1.0] * 99),
            run_row("goraxfast-fast", latency_ms=[101.0]),
        ]
        (row,) = summarize(runs)
        assert row["latency_samples"] == 100
        assert row["latency_p50_ms"] == 1.0
        assert row["latency_p99_ms"] == pytest.approx(2.0)

    def test_a_contender_that_always_fails_stays_in_the_table_as_failed(self) -> None:
        from bench.report import e2e_table, summarize

        rows = summarize([run_row("goraxfast-fast"), run_row("broken", status="failed")])
        broken = next(r for r in rows if r["contender"] == "broken")
        assert broken["status"] == "failed" and broken["error"] == "exited with code 1"
        assert "| broken | **failed**: exited with code 1" in e2e_table(rows)

    def test_a_failed_run_does_not_drag_the_median(self) -> None:
        from bench.report import summarize

        runs = [run_row("goraxfast-fast", rate=100.0), run_row("goraxfast-fast", status="failed")]
        (row,) = summarize(runs)
        assert (row["msgs_per_s"], row["runs_ok"], row["runs"]) == (100.0, 1, 2)

    def test_without_a_goraxfast_row_ratios_are_not_invented(self) -> None:
        from bench.report import summarize

        (row,) = summarize([run_row("other")])
        assert math.isnan(row["x_throughput"]) and math.isnan(row["x_cpu"])

    def test_cpu_over_the_ceiling_of_the_same_run(self) -> None:
        from bench.report import ceiling_line, summarize

        rows = summarize([run_row("goraxfast-fast", cpu_us=30.0), run_row("ceiling", cpu_us=20.0)])
        fast = next(r for r in rows if r["contender"] == "goraxfast-fast")
        assert fast["x_cpu_ceiling"] == 1.5
        line = ceiling_line(rows)
        assert "goraxfast-fast ×1.50" in line and "ceiling ×" not in line

    def test_no_ceiling_ratio_without_a_ceiling_run(self) -> None:
        from bench.report import ceiling_line, summarize

        (row,) = summarize([run_row("goraxfast-fast")])
        assert math.isnan(row["x_cpu_ceiling"]) and ceiling_line([row]) == ""

    def test_data_plane_ratios_per_call_and_per_message(self) -> None:
        from bench.report import summarize_dataplane

        def bench(kind: str, op: str, us: float) -> dict[str, object]:
            name = f"test_client_cpu_per_round_of_calls[{kind}-{op}]"
            return {"name": name, "extra_info": {"cpu_us_per_call": us}}

        micro = {
            "benchmarks": [
                bench("fast", "receive_10", 80.0),
                bench("botocore", "receive_10", 880.0),
                bench("fast", "delete_batch_10", 70.0),
                bench("botocore", "delete_batch_10", 700.0),
                bench("fast", "send_batch_10", 90.0),  # not part of the per-message sum
                bench("botocore", "send_batch_10", 900.0),
                {"name": "test_decode_msgspec", "extra_info": {}},
            ]
        }
        rows = {r["operation"]: r for r in summarize_dataplane(micro)}
        assert rows["receive_10"]["x_less"] == 11.0
        assert rows["delete_batch_10"]["x_less"] == 10.0
        per_message = rows["per message (receive_10 + delete_batch_10) / 10"]
        assert (per_message["fast"], per_message["botocore"]) == (15.0, 158.0)

    def test_no_data_plane_rows_without_both_clients(self) -> None:
        from bench.report import summarize_dataplane

        only_fast = {
            "benchmarks": [
                {
                    "name": "test_client_cpu_per_round_of_calls[fast-receive_10]",
                    "extra_info": {"cpu_us_per_call": 80.0},
                }
            ]
        }
        assert summarize_dataplane(only_fast) == [] and summarize_dataplane(None) == []


class TestFlameStacks:
    """profiles/flame.py: what `make profile` ranks, from py-spy's collapsed stacks."""

    RAW = (
        "<module> (run.py:1);poll (goraxfast/engine/poller.py:80);parse (botocore/parsers.py:10) 60\n"
        "<module> (run.py:1);poll (goraxfast/engine/poller.py:80);send (botocore/http.py:5) 20\n"
        "<module> (run.py:1);ack (goraxfast/engine/acker.py:9);parse (botocore/parsers.py:10) 20\n"
        "garbage line\n"
    )

    def test_collapsed_lines_become_stacks_with_counts(self) -> None:
        from profiles.flame import parse_collapsed

        stacks = parse_collapsed(self.RAW)
        assert sum(stacks.values()) == 100
        assert (
            stacks[
                (
                    "<module> (run.py:1)",
                    "ack (goraxfast/engine/acker.py:9)",
                    "parse (botocore/parsers.py:10)",
                )
            ]
            == 20
        )

    def test_self_time_groups_the_top_frame_across_callers(self) -> None:
        from profiles.flame import parse_collapsed, top_self

        (first, second) = top_self(parse_collapsed(self.RAW), n=2)
        assert (first.frame, first.samples, first.share) == ("parse (botocore/parsers.py)", 80, 0.8)
        assert (second.frame, second.share) == ("send (botocore/http.py)", 0.2)

    def test_inclusive_time_counts_every_frame_on_the_stack_and_skips_noise(self) -> None:
        from profiles.flame import parse_collapsed, top_inclusive

        costs = {
            c.frame: c.share
            for c in top_inclusive(parse_collapsed(self.RAW), n=10, skip=["<module>"])
        }
        assert costs == {
            "parse (botocore/parsers.py)": 0.8,
            "poll (goraxfast/engine/poller.py)": 0.8,
            "ack (goraxfast/engine/acker.py)": 0.2,
            "send (botocore/http.py)": 0.2,
        }

    def test_self_time_per_package_says_which_library_burns_the_cpu(self) -> None:
        from profiles.flame import parse_collapsed, top_packages

        costs = {c.frame: c.share for c in top_packages(parse_collapsed(self.RAW))}
        assert costs == {"botocore": 1.0}

    def test_flame_graph_and_speedscope_files_are_well_formed(self) -> None:
        import json
        import xml.etree.ElementTree as ET

        from profiles.flame import dump_speedscope, parse_collapsed, svg

        stacks = parse_collapsed(self.RAW)
        root = ET.fromstring(svg(stacks, "t & <test>"))
        # one box per tree node: all, <module>, poll, its parse, send, ack, its parse
        assert len(root.findall("{http://www.w3.org/2000/svg}g")) == 7
        doc = json.loads(dump_speedscope(stacks, "t"))
        assert sum(doc["profiles"][0]["weights"]) == 100
