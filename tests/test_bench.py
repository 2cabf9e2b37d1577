"""The benchmarks run and report what they claim (figures are not asserted: targets live in docs/benchmarks.md)."""

import pytest

from vlpref.bench.generation import bench_judge, bench_sample


def test_bench_sample_reports_identical_outputs():
    result = bench_sample(prompts=6, batch_size=3, max_new_tokens=8)
    assert result["outputs_identical"] is True  # batching (left padding) changes no greedy answer
    assert result["speedup"] > 0 and result["prompts"] == 6


def test_bench_judge_reports_efficiency():
    result = bench_judge(prompts=8, latency_s=0.05, concurrency=4)
    assert result["parsed_ok"] == 1.0 and result["bound_requests_per_s"] == 80.0
    assert 0 < result["efficiency"] <= 1.05


def test_bench_dpo_matches_trl_loss_and_reports_its_keys():
    from vlpref.bench.dpo import bench_dpo

    result = bench_dpo(batch=2, steps=2)
    assert result["loss_abs_diff"] <= 1e-4  # same weights, same batch: our loss is TRL's
    assert result["loss"] != pytest.approx(0.6931, abs=1e-3)  # the check's reference differs from the policy
    for key in ("pairs_per_s", "trl_pairs_per_s", "speedup", "peak_mem_mb", "trl_peak_mem_mb", "flops_per_s",
                "matmul_peak_flops_per_s", "trl_flops_per_s"):
        assert result[key] > 0, key
    # both runs' step 1 trained the same pairs: each side's summed log-probs agree, over the same tokens
    # (100 words + "." + </s> = 102 for every chosen answer)
    step1 = result["step1"]
    assert step1["tokens_identical"] and step1["tokens_chosen"] == [102, 102]
    assert step1["logps_chosen_abs_diff"] <= 1e-3 and step1["logps_rejected_abs_diff"] <= 1e-3
    assert result["check"]["logps_rejected_abs_diff"] <= 1e-3  # and in the loss check, with the second model


def test_bench_view_pages_and_filters_a_synthetic_dataset():
    from vlpref.bench.view import bench_view

    result = bench_view(pairs=300)
    assert result["pairs"] == 300 and result["jsonl_mb"] > 0
    for key in ("index_build_s", "first_page_ms", "last_page_ms", "strategy_filter_ms", "text_search_ms",
                "open_pair_ms", "peak_rss_mb"):
        assert result[key] >= 0, key
