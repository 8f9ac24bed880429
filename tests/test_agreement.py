"""The reward-vs-check agreement figures (trl_plugins/evaluation/agreement.py) on hand-computed numbers, and the
command on a sampling run's files with function rewards (no model)."""

from __future__ import annotations

import json

import pytest

from trl_plugins.evaluation.agreement import best_of_k, main, pairwise_agreement, pearson, ranks, spearman, summarize

from helpers import write_jsonl


def test_correlations_on_known_numbers():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = (1,2,3,4), y = (1,3,2,4): cov 2.5/3, var 5/3 each -> r = 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]
    # monotone but not linear: Spearman 1, Pearson < 1
    assert spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [1, 8, 27, 1000]) < 0.9


def test_pairwise_agreement_counts_only_pairs_the_check_orders():
    # prompt A: check orders (a,b), (a,c), (b,c)? b and c tie on the check -> 2 pairs; the reward gets (a,b) right,
    # ties on (a,c) -> 1.5 / 2. prompt B: one pair, reversed -> 0. prompt C: the check ties everything -> left out
    groups = [[(3.0, 0.9), (1.0, 0.1), (3.0, 0.1)], [(0.0, 1.0), (1.0, 0.0)], [(1.0, 0.5), (2.0, 0.5)]]
    shares, pairs = pairwise_agreement(groups)
    assert shares == [0.75, 0.0] and pairs == 3


def test_best_of_k_gain_is_the_check_of_the_rewards_pick_minus_the_mean():
    groups = [[(3.0, 0.9), (1.0, 0.1), (2.0, 0.2)], [(0.0, 1.0), (1.0, 0.0)], [(5.0, 0.7)]]
    mean_check, picked = best_of_k(groups)
    assert mean_check == pytest.approx([0.4, 0.5]) and picked == [0.9, 0.0]  # the single-sample prompt is left out
    figures = summarize([3.0, 1.0, 2.0, 0.0, 1.0], [0.9, 0.1, 0.2, 1.0, 0.0], ["a", "a", "a", "b", "b"])
    assert figures["best_of_k_gain"] == pytest.approx(((0.9 - 0.4) + (0.0 - 0.5)) / 2)
    assert figures["prompts"] == 2 and figures["samples"] == 5


def test_command_on_a_runs_files(tmp_path, capsys):
    """A reward equal to the check agrees fully and gains the most; its negation agrees never; unfinished samples
    are not read."""
    run = tmp_path / "run"
    for iteration in (1, 2):
        (run / f"iteration_{iteration}").mkdir(parents=True)
        rows = []
        for row in range(4):
            for sample, text in enumerate(["good great fun film", "bad awful", "fine", "cut off"]):
                rows.append({"row": row, "sample": sample, "prompt": "p", "completion": text,
                             "finished": text != "cut off"})
        (run / f"iteration_{iteration}" / "generations.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    out = tmp_path / "agreement.json"
    main([str(run), "--rewards", "vader_sentiment", "sampling_rewards:negated_vader", "sampling_rewards:none_for_short",
          "--check", "vader_sentiment", "--json", str(out)])
    figures = json.loads(out.read_text())
    same, negated = figures["vader_sentiment"]["all"], figures["sampling_rewards:negated_vader"]["all"]
    assert same["samples"] == 24 and same["prompts"] == 8  # 2 iterations x 4 prompts x 3 finished samples
    assert same["pairwise_agreement"] == pytest.approx(1.0) and negated["pairwise_agreement"] == pytest.approx(0.0)
    assert same["pearson"] == pytest.approx(1.0) and negated["pearson"] == pytest.approx(-1.0)
    assert same["best_of_k_gain"] > 0 > negated["best_of_k_gain"]
    assert set(figures["vader_sentiment"]) == {"all", "1", "2"}
    assert figures["sampling_rewards:none_for_short"]["all"]["samples"] == 8  # None for the two short texts: left out
    assert figures["(the check itself)"]["all"]["best_of_k_gain"] == pytest.approx(same["best_of_k_gain"])  # the upper bound
    assert "finished samples" in capsys.readouterr().out


def arithmetic_run(tmp_path):
    """A run's files over a prompt + answer dataset: two samples per row, one right and one wrong."""
    data = write_jsonl(tmp_path / "data.jsonl", [{"prompt": f"what is {a} plus one ?", "answer": str(a + 1)}
                                                 for a in range(4)])
    (tmp_path / "run" / "iteration_1").mkdir(parents=True)
    rows = [{"row": r, "sample": s, "prompt": f"what is {r} plus one ?", "completion": f" {r + 1 - s}",
             "finished": True} for r in range(4) for s in range(2)]
    (tmp_path / "run" / "iteration_1" / "generations.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    return tmp_path / "run", data


def test_command_reads_the_runs_dataset_columns_and_judges(tmp_path, tiny_model_dir, capsys):
    """--dataset gives the rewards and the check their row columns (exact_match reads `answer`); a judge:MODEL entry
    is scored with the --judge_* options and its seconds are printed."""
    run, data = arithmetic_run(tmp_path)
    (tmp_path / "judge.txt").write_text("{completion} equals {answer} ? yes or no")
    out = tmp_path / "agreement.json"
    main([str(run), "--dataset", data, "--rewards", "exact_match", f"judge:{tiny_model_dir}", "--judge_template",
          str(tmp_path / "judge.txt"), "--check", "exact_match", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert figures["exact_match"]["all"]["pairwise_agreement"] == pytest.approx(1.0)  # 4 prompts, right vs wrong
    judged = figures[f"judge:{tiny_model_dir}"]["all"]
    assert judged["samples"] == 8 and judged["pairs"] == 4 and 0 <= judged["pairwise_agreement"] <= 1
    assert "8 samples judged in" in capsys.readouterr().out


def test_command_refuses_a_dataset_that_is_not_the_runs(tmp_path):
    run, _ = arithmetic_run(tmp_path)
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": "hello", "answer": "1"}] * 4)
    with pytest.raises(SystemExit, match="is not this run's data: row 0's prompt differs"):
        main([str(run), "--dataset", other, "--rewards", "exact_match", "--check", "exact_match"])
    with pytest.raises(SystemExit, match="judge_template: a judge needs a template"):
        main([str(run), "--rewards", "judge:policy", "--check", "exact_match"])


def test_unfinished_samples_are_read_on_request(tmp_path, capsys):
    run, data = arithmetic_run(tmp_path)
    path = run / "iteration_1" / "generations.jsonl"
    rows = [dict(json.loads(line), finished=i % 2 == 0) for i, line in enumerate(path.read_text().splitlines())]
    path.write_text("\n".join(map(json.dumps, rows)) + "\n")
    out = tmp_path / "agreement.json"
    main([str(run), "--dataset", data, "--rewards", "exact_match", "--check", "exact_match", "--json", str(out)])
    assert json.loads(out.read_text())["exact_match"]["all"]["samples"] == 4
    main([str(run), "--dataset", data, "--rewards", "exact_match", "--check", "exact_match", "--json", str(out),
          "--unfinished"])
    assert json.loads(out.read_text())["exact_match"]["all"]["samples"] == 8
    assert "8 samples of" in capsys.readouterr().out
