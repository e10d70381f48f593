"""The bench's plots say what they show: axis labels with units, a title, and a legend naming
every colour, read off the figures the report builds from a small results document."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")  # the bench extra; see the report of issue 15 for CI

from bench import report
from bench.publish import MODES, PublishResult
from bench.runner import RunResult

CONTENDERS = {
    "goraxfast-fast": "goraxfast Engine (fast data plane)",
    "goraxfast-botocore": "goraxfast Engine (botocore)",
    "aio-batch": "asyncio + aiobotocore",
    "celery": "Celery + kombu SQS",
    "ceiling": "server ceiling (raw HTTP)",
}
#: A unit in brackets after the quantity: "(msgs/s", "(µs", "(ms)"; "worker processes" counts.
UNIT = re.compile(r"\((?:msgs/s|µs|ms)\b|^worker processes$|^contender$|^server$")


def run(contender: str, server: str, i: int, rate: float, **extra: Any) -> dict[str, Any]:
    r = RunResult(contender, CONTENDERS[contender], server, i, 2, "noop")
    r.msgs_per_s = rate * (1 + 0.05 * i)
    r.client_us_per_msg, r.server_us_per_msg = 1e6 / rate / 2, 20.0
    r.client_cores = r.server_cores = 0.5
    for key, value in extra.items():
        setattr(r, key, value)
    return r.as_dict()


def results_doc() -> dict[str, Any]:
    """Two servers, five contenders (Celery 60 times slower on one, failed on the other), round
    trips on one server, a scaling run and a publish run: every plot, both scales of the
    throughput plot and a failed bar."""
    e2e: list[dict[str, Any]] = []
    scaling: list[dict[str, Any]] = []
    publish: list[dict[str, Any]] = []
    rates = {
        "goraxfast-fast": 30000,
        "goraxfast-botocore": 5000,
        "aio-batch": 6000,
        "ceiling": 31000,
    }
    for i in range(2):
        for name, rate in {**rates, "celery": 500}.items():
            e2e.append(run(name, "fauxqs", i, rate))
        for name, rate in rates.items():
            e2e.append(run(name, "localstack", i, rate / 20 + 300))
        e2e.append(run("celery", "localstack", i, math.nan, status="failed", error="broker gone"))
    for i in range(2):
        for rtt in (15.0, 40.0):
            for name in ("goraxfast-fast", "aio-batch"):
                e2e.append(run(name, "fauxqs", i, rates[name] / (1 + rtt / 10), rtt_ms=rtt))
    for workers in (1, 2, 4):
        for name in ("goraxfast-fast", "aio-batch"):
            per_worker = 195 if name.startswith("goraxfast") else 180
            r = run(
                name, "fauxqs", 0, per_worker * min(workers, 2), workers=workers, handler="cpu:5"
            )
            scaling.append(r)
    for server in ("fauxqs", "localstack"):
        for mode in MODES:
            p = PublishResult(server, mode, 0, 1000, msgs_per_s=1000.0 + 500 * len(mode))
            publish.append(p.as_dict())
    doc: dict[str, Any] = {
        "meta": {"machine": {"cores": 2}},
        "servers": [{"name": "fauxqs"}, {"name": "localstack"}],
        "e2e": e2e,
        "scaling": scaling,
        "publish": publish,
        "publish_modes": MODES,
    }
    doc["e2e_summary"] = report.summarize(doc["e2e"])
    doc["scaling_summary"] = report.summarize(doc["scaling"])
    doc["publish_summary"] = report.summarize_publish(doc["publish"])
    return doc


@pytest.fixture(scope="module")
def figures() -> Any:
    import matplotlib.pyplot as plt

    built = report.figures(plt, results_doc())
    yield built
    for fig in built.values():
        plt.close(fig)


def legend_texts(ax: Any) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_every_plot_is_built(figures: dict[str, Any]) -> None:
    assert set(figures) == {"throughput", "scaling", "latency", "publish"}


@pytest.mark.parametrize("name", ["throughput", "scaling", "latency", "publish"])
def test_every_axes_has_a_title_and_axis_labels_with_units(
    figures: dict[str, Any], name: str
) -> None:
    for ax in figures[name].axes:
        assert ax.get_title(), name
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            assert UNIT.search(label), (name, ax.get_title(), label)


def test_the_throughput_plot_names_every_contender_and_the_servers_share(
    figures: dict[str, Any],
) -> None:
    """One legend for the figure: a contender has one colour in all four panels."""
    fig = figures["throughput"]
    assert len(fig.axes) == 4  # two servers, throughput and CPU each
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert set(CONTENDERS.values()) <= set(texts)
    assert any("server's CPU" in t for t in texts)


def test_the_throughput_plot_gives_each_contender_one_colour(figures: dict[str, Any]) -> None:
    fig = figures["throughput"]
    (legend,) = fig.legends
    colour = {
        t.get_text(): h.get_facecolor()
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    assert len({colour[label] for label in CONTENDERS.values()}) == len(CONTENDERS)
    for ax in fig.axes:  # each bar in its contender's colour (the hatched ones: the server's)
        rows = [tick.get_text() for tick in ax.get_yticklabels()]
        solid = [bar for bar in ax.patches if not bar.get_hatch()]
        for row, bar in zip(rows, solid, strict=True):
            assert bar.get_facecolor() == colour[row], (ax.get_title(), row)


def test_the_throughput_plot_says_when_its_axis_is_logarithmic(figures: dict[str, Any]) -> None:
    axes = [ax for ax in figures["throughput"].axes if ax.get_title().endswith("throughput")]
    scales = {ax.get_title(): ax.get_xscale() for ax in axes}
    assert scales == {"fauxqs: throughput": "log", "localstack: throughput": "linear"}
    for ax in axes:
        assert ("log scale" in ax.get_xlabel()) == (ax.get_xscale() == "log")


def test_a_failed_contender_is_marked_on_its_bars(figures: dict[str, Any]) -> None:
    localstack = [
        ax for ax in figures["throughput"].axes if ax.get_title().startswith("localstack")
    ]
    for ax in localstack:
        assert "failed" in [t.get_text().strip() for t in ax.texts]


@pytest.mark.parametrize("name", ["scaling", "latency"])
def test_the_line_plots_name_every_contender_they_draw(figures: dict[str, Any], name: str) -> None:
    for ax in figures[name].axes:
        drawn = {line.get_label() for line in ax.get_lines()}
        shown = set(legend_texts(ax))
        assert drawn and drawn <= shown, (name, drawn - shown)
        assert {CONTENDERS["goraxfast-fast"], CONTENDERS["aio-batch"]} <= shown


def test_the_publish_plot_names_every_mode_it_colours(figures: dict[str, Any]) -> None:
    (ax,) = figures["publish"].axes
    texts = legend_texts(ax)
    assert [t.split(":", 1)[0] for t in texts] == list(MODES)
    assert len({bar.get_facecolor() for bar in ax.patches}) == len(MODES)


def test_no_text_is_smaller_than_eight_points(figures: dict[str, Any]) -> None:
    for name, fig in figures.items():
        sizes = {t.get_fontsize() for t in fig.findobj(lambda o: hasattr(o, "get_fontsize"))}
        assert min(sizes) >= 8, name


@pytest.mark.parametrize("name", ["throughput", "scaling", "latency", "publish"])
def test_nothing_drawn_is_cut_off_at_the_saved_size(figures: dict[str, Any], name: str) -> None:
    """What is drawn (labels, titles, legends, the numbers on the bars) lies on the page."""
    fig = figures[name]
    fig.set_dpi(report.PLOT_DPI)
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    page = fig.bbox_inches
    slack = 0.02  # inches: rounding
    assert drawn.x0 >= page.x0 - slack and drawn.y0 >= page.y0 - slack, (drawn, page)
    assert drawn.x1 <= page.x1 + slack and drawn.y1 <= page.y1 + slack, (drawn, page)


def test_plots_writes_one_png_per_figure(tmp_path: Path) -> None:
    written = report.plots(results_doc(), tmp_path)
    assert sorted(p.name for p in written) == [
        "latency.png",
        "publish.png",
        "scaling.png",
        "throughput.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in written)
