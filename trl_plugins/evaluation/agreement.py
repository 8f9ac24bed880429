"""Does a reward agree with an independent check on a sampling run's own samples? (docs/methods/margin_rm.md, "Is the
reward model good enough?")

For each reward, over the finished samples (``--unfinished``: all) of the iterations' ``generations.jsonl``: Pearson
and Spearman correlation with the check; within-prompt pairwise agreement (of two samples of one prompt the check tells apart, how often the
reward orders them the same way); and the check's gain from a best-of-K pick by the reward (what rejection sampling
and RAFT select), ± SE with a paired 95% bootstrap interval over prompts. Rewards and check are scored by the same
code as training (``reward_funcs`` entries: a registered name, ``module:function``, a reward-model path or a
``judge:MODEL`` with the ``--judge_*`` options); ``--dataset`` gives them the run's row columns (e.g. ``answer``).

    python -m trl_plugins.evaluation.agreement outputs/rejection-sampling-demo \\
        --rewards ./outputs/margin-rm-continuations-label ./outputs/margin-rm-continuations --check vader_sentiment
    python -m trl_plugins.evaluation.agreement outputs/rest-em-demo --dataset embedded:arithmetic \\
        --rewards judge:embedded:smollm2-135m-instruct --judge_template answer_correct --check exact_match
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .intervals import mean_se, paired_bootstrap


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    if n < 2:
        return math.nan
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for k in range(start, stop + 1):
            out[order[k]] = (start + stop) / 2 + 1
        start = stop + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(ranks(x), ranks(y))


def pairwise_agreement(groups: Sequence[Sequence[tuple[float, float]]]) -> tuple[list[float], int]:
    """Per group (one prompt's ``(reward, check)`` pairs): the share of its sample pairs that the check orders
    (different check values) which the reward orders the same way (a reward tie counts one half). Returns the
    per-group shares (groups without such a pair left out) and the number of pairs."""
    shares, total = [], 0
    for group in groups:
        hits, pairs = 0.0, 0
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                (ri, ci), (rj, cj) = group[i], group[j]
                if ci == cj:
                    continue
                pairs += 1
                hits += 0.5 if ri == rj else float((ri > rj) == (ci > cj))
        if pairs:
            shares.append(hits / pairs)
            total += pairs
    return shares, total


def best_of_k(groups: Sequence[Sequence[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """Per group with two or more samples: the mean check of all its samples, and the check of the sample the reward
    ranks first (the first of equals)."""
    mean_check, picked = [], []
    for group in groups:
        if len(group) < 2:
            continue
        mean_check.append(sum(c for _, c in group) / len(group))
        picked.append(max(group, key=lambda rc: rc[0])[1])
    return mean_check, picked


def summarize(rewards: Sequence[float], checks: Sequence[float], prompt_of: Sequence[object]) -> dict:
    """Every figure of one reward against the check; samples grouped by ``prompt_of``."""
    by_prompt: dict[object, list[tuple[float, float]]] = defaultdict(list)
    for r, c, p in zip(rewards, checks, prompt_of):
        by_prompt[p].append((r, c))
    groups = list(by_prompt.values())
    shares, pairs = pairwise_agreement(groups)
    agreement, agreement_se = mean_se(shares)
    mean_check, picked = best_of_k(groups)
    gain, gain_se = mean_se([p - m for p, m in zip(picked, mean_check)])
    low, high = paired_bootstrap(mean_check, picked)
    return {
        "samples": len(rewards), "prompts": len(groups),
        "pearson": pearson(rewards, checks), "spearman": spearman(rewards, checks),
        "pairwise_agreement": agreement, "pairwise_agreement_se": agreement_se, "pairs": pairs,
        "best_of_k_gain": gain, "best_of_k_gain_se": gain_se, "best_of_k_gain_interval": [low, high],
    }


def read_samples(run_dir: Path, unfinished: bool = False) -> list[dict]:
    """The finished samples (``unfinished``: all) of every ``iteration_N/generations.jsonl`` of a sampling run, with
    their iteration."""
    files = sorted(run_dir.glob("iteration_*/generations.jsonl"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not files:
        raise SystemExit(f"agreement: no iteration_*/generations.jsonl under {run_dir}")
    from ..sampling.store import read_jsonl

    out = [dict(row, iteration=int(path.parent.name.split("_")[1])) for path in files for row in read_jsonl(path)]
    return [s for s in out if unfinished or s.get("finished", True)]


def row_columns(samples: list[dict], dataset: str, config: str | None, split: str) -> list[dict]:
    """Each sample's dataset row without its prompt (the columns rewards read, e.g. ``answer``), from the run's own
    dataset; a row whose prompt is not the sample's means the dataset is not the run's (one line)."""
    from ..checks.data import load_source

    data = load_source(dataset, config)
    if split not in data:
        raise SystemExit(f"agreement: --dataset {dataset!r} has no split {split!r} (found: {', '.join(data)})")
    rows = data[split]
    out = []
    for s in samples:
        if s["row"] >= len(rows) or rows[s["row"]]["prompt"] != s["prompt"]:
            raise SystemExit(f"agreement: --dataset {dataset!r} ({split}) is not this run's data: row {s['row']}'s "
                             "prompt differs from the sample's")
        out.append({k: v for k, v in rows[s["row"]].items() if k != "prompt"})
    return out


def main(argv: list[str] | None = None) -> None:
    from ..errors import ConfigError, DataError
    from ..sampling import reward_sources

    parser = argparse.ArgumentParser(prog="python -m trl_plugins.evaluation.agreement", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a sampling run's output_dir (its iteration_*/generations.jsonl)")
    parser.add_argument("--rewards", nargs="+", required=True, help="reward_funcs entries to judge")
    parser.add_argument("--check", default="vader_sentiment", help="the independent check (a reward_funcs entry)")
    parser.add_argument("--dataset", help="the run's dataset_name: its rows' columns reach the rewards and the check")
    parser.add_argument("--dataset_config", help="the run's dataset_config")
    parser.add_argument("--split", default="train", help="the split the run sampled its prompts from")
    parser.add_argument("--unfinished", action="store_true",
                        help="also read samples cut off at max_new_tokens (e.g. answers followed by more text)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    judges = parser.add_argument_group("judge:MODEL entries (as the recipe keys of the same names)")
    judges.add_argument("--judge_template")
    judges.add_argument("--judge_mode", default="yes_probability")
    judges.add_argument("--judge_score_range", nargs=2, type=float, default=[0.0, 5.0])
    judges.add_argument("--judge_max_new_tokens", type=int, default=160)
    judges.add_argument("--judge_batch_size", type=int, default=8)
    judges.add_argument("--judge_load_in_4bit", action="store_true")
    args = parser.parse_args(argv)

    samples = read_samples(args.run_dir, args.unfinished)
    prompts = [s["prompt"] for s in samples]
    completions = [s["completion"] for s in samples]
    try:
        rows = (row_columns(samples, args.dataset, args.dataset_config, args.split) if args.dataset
                else [{} for _ in samples])
        entries = reward_sources.resolve(args.rewards, key="--rewards", options=args)
        check_entries = reward_sources.resolve([args.check], key="--check", options=args)
        sources, check_sources = reward_sources.build(entries), reward_sources.build(check_entries)
        _, scores = reward_sources.score(sources, prompts, completions, rows, progress=True)
        _, checked = reward_sources.score(check_sources, prompts, completions, rows)
    except (ConfigError, DataError, ValueError) as exc:
        raise SystemExit(f"agreement: {str(exc).splitlines()[0]}") from None
    for source in sources + check_sources:
        if hasattr(source, "seconds"):
            print(f"{source.entry.name}: {len(samples)} samples judged in {source.seconds:.1f} s")
    check = checked[check_entries[0].name]
    results = {}
    iterations = sorted({s["iteration"] for s in samples})
    print(f"{len(samples)} {'' if args.unfinished else 'finished '}samples of {args.run_dir} (iterations {iterations}); "
          f"check: {args.check}")
    print(f"{'reward':<34}{'iter':>5}{'n':>6}{'pearson':>9}{'spearman':>9}  {'pairwise agree ± SE':<22}"
          f"best-of-K gain in the check ± SE [95%]")
    # the check ranking its own samples: the most a best-of-K pick can gain in it (an upper bound for each reward)
    judged = [(entry, scores[e.name]) for entry, e in zip(args.rewards, entries)] + [("(the check itself)", check)]
    for entry, values in judged:
        label = Path(entry).name if "/" in entry else entry
        for iteration in [None, *iterations] if len(iterations) > 1 else [None]:
            keep = [i for i, s in enumerate(samples) if (iteration is None or s["iteration"] == iteration)
                    and values[i] is not None and check[i] is not None]  # a reward may not score a sample
            figures = summarize([values[i] for i in keep], [check[i] for i in keep],
                                [(samples[i]["iteration"], samples[i]["row"]) for i in keep])
            results.setdefault(entry, {})["all" if iteration is None else str(iteration)] = figures
            low, high = figures["best_of_k_gain_interval"]
            print(f"{label[:34]:<34}{'all' if iteration is None else iteration:>5}{figures['samples']:>6}"
                  f"{figures['pearson']:>9.3f}{figures['spearman']:>9.3f}  "
                  f"{figures['pairwise_agreement']:.3f} ± {figures['pairwise_agreement_se']:.3f}{'':<8}"
                  f"{figures['best_of_k_gain']:+.3f} ± {figures['best_of_k_gain_se']:.3f} [{low:+.3f}, {high:+.3f}]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
