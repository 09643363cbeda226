"""The bench's arithmetic: wrk's report parsed, percentiles, medians and ratios."""

from __future__ import annotations

import math
import os
import resource
import threading
import time

import pytest

from tests.bench import procs, wrk
from tests.bench.compare import Costed, Series
from tests.bench.config import BenchConfig
from tests.bench.stats import median, percentile, ratio
from tests.bench.streams import Stream, numbered_tokens, token_latencies

# Real wrk 4.1 output (Debian's package), one thread, 32 connections, through Envoy.
WRK_OK = """\
Running 2s test @ http://127.0.0.1:38973/v1/api/workflow/run/ceiling
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    19.95ms    9.33ms  63.37ms   76.99%
    Req/Sec     1.64k   420.17     2.63k    71.43%
  Latency Distribution
     50%   18.33ms
     75%   23.14ms
     90%   33.45ms
     99%   54.03ms
  3428 requests in 2.10s, 0.88MB read
Requests/sec:   1630.01
Transfer/sec:    430.81KB
"""

WRK_ERRORS = """\
Running 5s test @ http://127.0.0.1:8080/v1/api/workflow/run/wf_1
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  100.00us   1.20s    90.00%
    Req/Sec   100.00     10.00   120.00     70.00%
  Latency Distribution
     50%  812.00us
     75%    1.50ms
     90%  250.00ms
     99%    1.20s
  501 requests in 5.00s, 120.00KB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 40
Requests/sec:    100.20
Transfer/sec:     24.00KB
"""

# What wrk prints when no request finished in time: zeros that are no latency at all.
WRK_NOTHING = """\
Running 1s test @ http://127.0.0.1:18999/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.00s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def test_wrk_report_gives_throughput_and_percentiles() -> None:
    result = wrk.parse_output(WRK_OK)
    assert result.requests == 3428
    assert result.duration_s == pytest.approx(2.10)
    assert result.requests_per_s == pytest.approx(1630.01)
    assert result.p50_s == pytest.approx(0.01833)
    assert result.p99_s == pytest.approx(0.05403)
    assert result.latency_s[75.0] == pytest.approx(0.02314)
    assert result.errors == 0


def test_wrk_report_counts_socket_errors_and_bad_statuses() -> None:
    result = wrk.parse_output(WRK_ERRORS)
    assert result.socket_errors == 6
    assert result.non_2xx == 40
    assert result.errors == 46
    assert result.p50_s == pytest.approx(812e-6)
    assert result.latency_s[90.0] == pytest.approx(0.25)
    assert result.p99_s == pytest.approx(1.2)


def test_wrk_report_without_requests_has_no_latency() -> None:
    result = wrk.parse_output(WRK_NOTHING)
    assert result.requests == 0
    assert result.requests_per_s == 0
    assert math.isnan(result.p50_s)
    assert math.isnan(result.p99_s)


def test_wrk_report_without_latency_distribution_is_refused() -> None:
    without = "\n".join(
        line for line in WRK_OK.splitlines() if "%" not in line or "Latency " in line
    )
    with pytest.raises(ValueError, match="--latency"):
        wrk.parse_output(without)
    with pytest.raises(ValueError, match="no totals"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("812.00us", 812e-6), ("6.45ms", 6.45e-3), ("1.02s", 1.02), ("1.50m", 90.0), ("2.00h", 7200)],
)
def test_wrk_durations(text: str, seconds: float) -> None:
    assert wrk.parse_duration(text) == pytest.approx(seconds)


def test_wrk_duration_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError):
        wrk.parse_duration("12 ms")


def test_post_script_is_lua_with_quotes_escaped() -> None:
    script = wrk.post_script('{"input":{"a":"b\\\\c"}}', {"X-API-KEY": "fp_abc"})
    assert script == (
        'wrk.method = "POST"\n'
        'wrk.body = "{\\"input\\":{\\"a\\":\\"b\\\\\\\\c\\"}}"\n'
        'wrk.headers["X-API-KEY"] = "fp_abc"\n'
    )
    with pytest.raises(ValueError):
        wrk.lua_string("身高")
    with pytest.raises(ValueError):
        wrk.lua_string("two\nlines")


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile(list(range(101)), 99) == 99
    assert percentile([10, 20], 99) == pytest.approx(19.9)
    assert percentile([7], 99) == 7


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_median_leaves_out_unknown_runs() -> None:
    assert median([3, 1, 2]) == 2
    assert median([1, math.nan, 3]) == 2
    assert math.isnan(median([math.nan]))
    assert math.isnan(median([]))


def test_ratio_is_unknown_without_a_denominator() -> None:
    assert ratio(50, 200) == 0.25
    assert math.isnan(ratio(50, 0))
    assert math.isnan(ratio(math.nan, 10))


def test_token_latency_maps_joined_frames_to_each_token() -> None:
    tokens = numbered_tokens(3)
    assert tokens == ["t0;", "t1;", "t2;"]
    written = [100.0, 100.5, 101.0]
    # The service may join tokens: the second frame carries two.
    stream = Stream(sent=99.0, frames=[(100.25, "t0;"), (101.5, "t1;t2;")])
    assert token_latencies(stream, written) == [0.25, 1.0, 0.5]
    assert stream.first_stream_s == 1.25
    with pytest.raises(RuntimeError, match="2 of 3"):
        token_latencies(Stream(sent=99.0, frames=[(100.25, "t0;t1;")]), written)
    with pytest.raises(RuntimeError, match="twice"):
        token_latencies(Stream(sent=99.0, frames=[(100.25, "t0;t0;")]), written)


def test_versus_table_gives_each_concurrency_its_ratio_and_p50_difference() -> None:
    # Here, not at the top: versus imports the service's packages, the rest of this file not.
    from tests.bench.compare import Comparison
    from tests.bench.versus import render

    def figure(rps: float, p50_ms: float) -> wrk.WrkResult:
        return wrk.WrkResult(
            requests=int(rps), duration_s=1.0, requests_per_s=rps, latency_s={50.0: p50_ms / 1e3}
        )

    one = Comparison(concurrency=1, names=("this", "abc123"))
    one.ours.figures += [figure(300, 3.0), figure(320, 2.8)]
    one.base.figures += [figure(250, 3.6), figure(260, 3.5)]
    table = render("abc123", [one]).splitlines()

    assert table[0].startswith("this checkout vs abc123") and "2 alternating runs" in table[0]
    # Medians: 310 vs 255 req/s (x1.22 as the median of x1.20 and x1.23), p50 2.90 vs 3.55.
    # No CPU figures: these runs were measured without their processes.
    row = ["1", "310", "2.90", "n/a", "255", "3.55", "n/a", "x1.22", "-0.65", "ms"]
    assert table[2].split() == row


def test_cpu_seconds_counts_the_work_of_every_thread() -> None:
    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    before = procs.cpu_seconds([os.getpid()])
    worker = threading.Thread(target=spin, args=(0.2,))
    worker.start()
    spin(0.2)
    worker.join()
    # Clock ticks are 10 ms: both threads' 0.4 s, less a tick or two.
    assert procs.cpu_seconds([os.getpid()]) - before >= 0.35
    assert procs.cpu_seconds([2**22 + 1]) == 0  # no such process: nothing to count


def test_cpu_per_request_is_the_median_of_the_runs_that_measured_it() -> None:
    figure = wrk.parse_output(WRK_OK)
    series = Series(
        [
            Costed(figure, {"service": 900.0, "envoy": 400.0}),
            figure,  # measured without its processes: left out
            Costed(figure, {"service": 1100.0, "envoy": 500.0}),
        ]
    )
    # Here, not at the top: report imports the service's packages, the rest of this file not.
    from tests.bench.report import cpu_cell

    assert series.cpu_us_per_request("service") == 1000.0
    assert cpu_cell(series) == "1,000 + 450"
    assert cpu_cell(Series([figure])) == "n/a"


def test_bench_streams_sets_the_concurrent_streams_and_refuses_none() -> None:
    assert BenchConfig.from_env({}).concurrent_streams == 10_000
    assert BenchConfig.from_env({"BENCH_QUICK": "1"}).concurrent_streams == 100
    assert BenchConfig.from_env({"BENCH_STREAMS": "2000"}).concurrent_streams == 2000
    with pytest.raises(ValueError, match="BENCH_STREAMS"):
        BenchConfig.from_env({"BENCH_STREAMS": "0"})


def test_open_files_limit_is_the_soft_limit_a_process_has() -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    expected = None if soft == resource.RLIM_INFINITY else soft
    assert procs.open_files_limit(os.getpid()) == expected
