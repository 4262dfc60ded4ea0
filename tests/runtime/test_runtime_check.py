"""The end-to-end check: per-kernel logit comparison against the original, a wrong kernel is
reverted and named, and tokens/s are measured side by side (no speed is asserted)."""

from __future__ import annotations

from runtime_support import build_tiny

from solforge.runtime.check import check_model, compare_logits


def test_check_passes_honest_kernels_and_reverts_a_wrong_one(tiny, tmp_path):
    from runtime_support import seed_winner

    # an honest numba kernel of the wrong definition: eps 0.1 where the model uses 1e-5
    wrong_defn = tiny["dataset"].definitions["rmsnorm_h64"].model_copy(deep=True)
    wrong = seed_winner(tmp_path / "wrong", wrong_defn)
    model = build_tiny(tiny["config"]).model
    good = [tiny["winners"]["silu_and_mul_i128"], tiny["winners"]["fused_add_rmsnorm_h64"]]
    report, kmodel = check_model(model, good + [wrong], device="cpu", batch=2, seq_len=16, prompts=2, rounds=0,
                                 datasets=[tiny["profile"]])
    verdicts = {k.definition: k for k in report.kernels}
    assert verdicts["silu_and_mul_i128"].passed and verdicts["fused_add_rmsnorm_h64"].passed
    assert all(k.calls > 0 for k in report.kernels)
    assert report.overall is not None and report.overall.max_rel <= report.max_rel_tolerance
    assert report.reverted == [] and report.passed
    # the same run with a kernel that computes something else: its definition is reverted
    from solforge.knowledge import seeds_for
    from solforge.spec import dump_json

    bad_sol = seeds_for(wrong_defn, "numba")[0].to_solution(wrong_defn)
    bad_sol.sources[0].content = bad_sol.sources[0].content.replace("EPS = 1e-05", "EPS = 0.1")
    (wrong / "solution.json").write_text(dump_json(bad_sol))
    report, kmodel = check_model(model, good + [wrong], device="cpu", batch=2, seq_len=16, prompts=2, rounds=0,
                                 datasets=[tiny["profile"]])
    assert report.reverted == ["rmsnorm_h64"] and not report.passed
    failed = next(k for k in report.kernels if k.definition == "rmsnorm_h64")
    assert not failed.passed and "max rel error" in failed.reason
    assert "rmsnorm_h64" not in {name for name in kmodel.__dict__["_solforge_kernels"].dispatchers}
    assert report.overall.max_rel <= report.max_rel_tolerance  # what is left passes together


def test_speed_is_measured_for_each_variant(tiny):
    model = build_tiny(tiny["config"]).model
    report, _ = check_model(model, [tiny["winners"]["silu_and_mul_i128"]], device="cpu", batch=1, seq_len=8,
                            prompts=1, rounds=2, decode_steps=2, compile=False, datasets=[tiny["profile"]])
    assert [s.variant for s in report.speed] == ["eager", "kernelized"]
    for s in report.speed:
        assert s.prefill_tokens_s > 0 and s.decode_tokens_s > 0 and s.rounds == 2
    eager, kernelized = report.speed
    assert eager.prefill_speedup is None and kernelized.prefill_speedup > 0 and kernelized.decode_speedup > 0
    assert kernelized.prefill_speedup_ci is None  # 2 rounds give no 95% interval


def test_the_median_interval_is_the_sign_test_one_and_the_verdict_needs_all_of_it_on_one_side():
    from solforge.runtime.check import median_interval, speed_verdict

    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 5 rounds: no 95% interval exists
    assert median_interval([float(v) for v in range(1, 7)]) == (1.0, 6.0)
    assert median_interval([float(v) for v in range(15, 0, -1)]) == (4.0, 12.0)  # tables: n = 15 -> (4, 12)
    assert median_interval([float(v) for v in range(1, 21)]) == (6.0, 15.0)  # n = 20 -> (6, 15)
    assert speed_verdict(1.02, (1.01, 1.04)) == "faster"
    assert speed_verdict(0.97, (0.95, 0.99)) == "slower"
    assert speed_verdict(1.02, (0.99, 1.04)) == "within noise"
    assert speed_verdict(1.02, None) == "too few rounds"


def test_compare_logits_counts_decisive_flips_only():
    import torch

    ref = torch.tensor([[[5.0, 0.0, 0.0], [1.0, 0.99, 0.0]]])  # a clear lead, and a near tie
    near_tie_flipped = torch.tensor([[[5.0, 0.0, 0.0], [0.99, 1.0, 0.0]]])
    err = compare_logits([ref], [near_tie_flipped], 5e-2)
    assert err.top1 == 0.5 and err.decisive_top1 == 1.0 and err.decisive_positions == 1
    clear_flipped = torch.tensor([[[0.0, 5.0, 0.0], [1.0, 0.99, 0.0]]])
    assert compare_logits([ref], [clear_flipped], 5e-2).decisive_top1 == 0.0
