"""The benchmarks run and report what they claim (figures are not asserted: targets live in docs/benchmarks.md)."""

from vlpref.bench import bench_judge, bench_sample


def test_bench_sample_reports_identical_outputs():
    result = bench_sample(prompts=6, batch_size=3, max_new_tokens=8)
    assert result["outputs_identical"] is True  # batching (left padding) changes no greedy answer
    assert result["speedup"] > 0 and result["prompts"] == 6


def test_bench_judge_reports_efficiency():
    result = bench_judge(prompts=8, latency_s=0.05, concurrency=4)
    assert result["parsed_ok"] == 1.0 and result["bound_requests_per_s"] == 80.0
    assert 0 < result["efficiency"] <= 1.05
