"""The offline CPU demos: train a method on the embedded model and data, and show held-out numbers before vs after,
each with its standard error and a paired 95% bootstrap interval of the change.

    python -m trl_plugins.demo                      # what `./run demo` runs: RAFT (about 16 minutes on 2 idle cores)
    python -m trl_plugins.demo orpo                 # ORPO on preference pairs
    python -m trl_plugins.demo mdpo --recipe demo/mdpo --output_dir outputs/mdpo-demo
    python -m trl_plugins.demo spin                 # a method run by a trainer: SPIN is iterative-dpo with spin pairs

RAFT (and the other sampling trainers: rest, rest-em, rejection-sampling, iterative-dpo, iterative-orpo): the engine's own held-out table,
then the headline — the held-out mean of the training reward (VADER sentiment of continuations of held-out IMDB
openings) — beside a fluency check: the base model's mean log-likelihood per token of the same samples
(``loglik:`` monitor, trl_plugins/sampling/loglik_reward.py), each before → after with a paired 95% interval.

ORPO (embedded Rotten Tomatoes pairs): preference accuracy and log-prob margin on held-out test pairs, and the VADER
sentiment of reviews sampled for held-out prompts — paraphrases of the request that no training row carries (every
training row has the prompt "Write a one-sentence movie review.") — by the sampling engine's own held-out evaluation
(``sampling.engine.evaluate_heldout``: the unit is the prompt). mDPO (embedded shapes): the held-out
image-conditional margin and preference accuracy. iterative-dpo / iterative-orpo (embedded arithmetic, held out by
facts): the sampling engine's own held-out greedy accuracy, before training and after each iteration.

Feedback from a model (:data:`RECIPE_DEMOS`, docs/methods/judges.md and spin.md): ``self-rewarding`` (iterative-dpo,
the policy judges its own samples; the verdict reads the base model's fixed judgment of the held-out samples),
``rlaif`` (raft trained by the embedded model as a sentiment judge; the verdict reads VADER, the independent check)
and ``spin`` (iterative-dpo, the reference answer against the policy's own; held-out exact match).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .compat import quiet
from .errors import TrlPluginsError

# Held-out prompts of the ORPO demo: never a prompt of the training data (tests/test_demo.py checks it).
HELDOUT_REVIEW_PROMPTS = (
    "Give a one-line review of a film you watched recently.",
    "In a single sentence, tell me what you thought of a movie.",
    "Describe a movie you saw, in one sentence.",
    "Share a short opinion of a film.",
    "What did you think of the last movie you watched? One sentence, please.",
    "Write a brief critic's verdict on a film.",
    "Sum up a movie in one sentence, as a reviewer would.",
    "Review a film in about twenty words.",
)


def _before_after(method: str, recipe: str, output_dir: str, make_evaluate):
    """Check the run, evaluate the base model, train, evaluate the trained one: ``(run, trainer, minutes, before,
    after)``. ``make_evaluate(run)`` returns ``model -> {metric: [one value per held-out item]}``."""
    from .registry import get_registry
    from .run import flow

    argv = ["--config", recipe, "--output_dir", output_dir, "--overwrite_output_dir", "true"]
    run = flow.prepare_run(get_registry().trainer(method), argv)  # every input check, before the model loads
    evaluate = make_evaluate(run)
    print("\n[1/3] evaluating the base model on the held-out items ...")
    base = run.load_model()
    before = evaluate(base)
    del base
    print(f"\n[2/3] training {method} ...")
    start = time.time()
    trainer = flow.train(run)
    minutes = (time.time() - start) / 60
    print("\n[3/3] evaluating the trained model ...")
    after = evaluate(trainer.model)
    return run, trainer, minutes, before, after


def _table(title: str, rows: list[tuple[str, str]], before: dict, after: dict) -> dict[str, tuple[float, float]]:
    """Print before ± SE, after ± SE, change [95% paired bootstrap interval]; returns the intervals by metric."""
    from .evaluation.intervals import change_line, paired_bootstrap

    print(f"\n{title}")
    print(f"{'held-out metric':<50}{'before ± SE':>14}{'after ± SE':>16}{'change [95% interval]':>29}")
    intervals = {}
    for label, key in rows:
        print(change_line(label, before[key], after[key]))
        intervals[key] = paired_bootstrap(before[key], after[key])
    return intervals


def _verdict(intervals: dict, names: dict[str, str], primary: str) -> int:
    up = [names[k] for k, (low, _) in intervals.items() if low > 0]
    unclear = [names[k] for k, (low, high) in intervals.items() if low <= 0 <= high]
    down = [names[k] for k, (_, high) in intervals.items() if high < 0]
    print("\nresult: rose beyond noise: " + (", ".join(up) or "none")
          + ("; within noise: " + ", ".join(unclear) if unclear else "")
          + ("; fell: " + ", ".join(down) if down else ""))
    return 0 if primary in intervals and intervals[primary][0] > 0 else 1


def run_orpo_demo(recipe: str, output_dir: str, n_test: int, n_generations: int) -> int:
    from .evaluation.heldout import preference_accuracy
    from .sampling import reward_sources
    from .sampling.config import sampling_options
    from .sampling.engine import HeldoutSettings, evaluate_heldout
    from .sampling.generation import make_backend
    from .sampling.records import TOTAL

    samples: list[list[str]] = []  # the sampled reviews of each evaluation (before, after)
    per_prompt = max(1, n_generations // len(HELDOUT_REVIEW_PROMPTS))

    def make_evaluate(run):
        test = run.datasets[run.script_args.dataset_test_split].select(range(n_test))
        tokenizer = run.load_processing_class()
        chat = isinstance(test[0]["prompt"], list)
        rows = [{"prompt": [{"role": "user", "content": p}] if chat else p + "\n"} for p in HELDOUT_REVIEW_PROMPTS]
        # the held-out evaluation of the sampling engine and compare: VADER of fresh samples, per held-out prompt
        options = sampling_options(reward_funcs=["vader_sentiment"], heldout_num_generations=per_prompt,
                                   heldout_temperature=0.7, max_new_tokens=40, seed=run.training_args.seed)
        sources = reward_sources.build(reward_sources.resolve(options.reward_funcs))

        def evaluate(model):
            pref = preference_accuracy(model, tokenizer, test, batch_size=16, max_length=128)
            evaluation = evaluate_heldout(make_backend(options.generation_backend, model, tokenizer), rows, sources,
                                          [], HeldoutSettings.of(options))
            samples.append([group[0].text for group in evaluation.samples])
            return {"accuracy": [float(m > 0) for m in pref["margins"]], "margin": pref["margins"],
                    "vader": evaluation.scores.per_prompt[TOTAL]}

        return evaluate

    run, trainer, minutes, before, after = _before_after("orpo", recipe, output_dir, make_evaluate)
    title = (f"ORPO demo: {run.model_args.model_name_or_path}, {trainer.state.global_step} steps in {minutes:.1f} min; "
             f"{n_test} held-out pairs; {per_prompt} samples for each of {len(HELDOUT_REVIEW_PROMPTS)} held-out "
             "prompts")
    rows = [("preference accuracy (logp chosen > rejected)", "accuracy"),
            ("logp margin chosen - rejected (nats/token)", "margin"),
            ("VADER of samples, per held-out prompt (-1..1)", "vader")]
    intervals = _table(title, rows, before, after)
    print("\nsample generations (before -> after):")
    for b, a in list(zip(samples[0], samples[-1]))[:3]:
        print(f"  - {b[:110]!r}\n    -> {a[:110]!r}")
    return _verdict(intervals, {"accuracy": "accuracy", "margin": "margin", "vader": "VADER"}, primary="margin")


SAMPLING_DEMOS = ("raft", "rest", "rest-em", "rejection-sampling", "iterative-dpo", "iterative-orpo")
# demo name -> (trainer, recipe, the held-out column its verdict reads): methods a trainer runs with a recipe's knobs
RECIPE_DEMOS = {
    "self-rewarding": ("iterative-dpo", "demo/iterative_dpo/self_rewarding", "heldout/judge_smollm2-135m-instruct"),
    "rlaif": ("raft", "demo/raft/rlaif", "heldout/vader_sentiment"),
    "spin": ("iterative-dpo", "demo/iterative_dpo/spin", "heldout_reward_mean"),
}


def run_sampling_demo(method: str, recipe: str, output_dir: str, primary: str | None = None) -> int:
    """A sampling trainer's demo recipe through the train flow; the verdict reads the engine's last summary (its
    exit code: whether ``primary``, default the training reward's held-out mean, rose beyond noise)."""
    from .registry import get_registry
    from .run import flow
    from .sampling.records import TOTAL, HeldoutScores

    argv = ["--config", recipe, "--output_dir", output_dir, "--overwrite_output_dir", "true"]
    run = flow.prepare_run(get_registry().trainer(method), argv)  # every input check, before the model loads
    start = time.time()
    trainer = flow.train(run)
    minutes = (time.time() - start) / 60
    last = trainer.summaries[-1]
    heldout, base = last.heldout or HeldoutScores(), trainer.heldout_baseline or HeldoutScores()
    metric = ", ".join(run.training_args.reward_funcs)
    trained = {source.entry.name for source in trainer.reward_sources}  # names in the summary
    rows = [(TOTAL, f"held-out {metric} (training reward)")] if trained else []
    rows += [(key, f"held-out {key.removeprefix('heldout/')} (monitor)") for key in heldout.means
             if key.startswith("heldout/") and key.removeprefix("heldout/") not in trained]
    print(f"\n{method} demo: {run.model_args.model_name_or_path}, {len(trainer.summaries)} iterations in "
          f"{minutes:.1f} min; held-out prompts never trained on (the test split)")
    print(f"{'held-out metric':<52}{'before ± SE':>16}{'after ± SE':>16}{'change [95% interval]':>26}")
    intervals, names = {}, {}
    for key, label in rows:
        after, before = heldout.means.get(key), last.baseline.get(key)
        if after is None or before is None or key not in heldout.changes:
            continue
        intervals[key], names[key] = heldout.changes[key], label.split(" (")[0].removeprefix("held-out ")
        low, high = heldout.changes[key]
        print(f"{label:<52}{before:>9.3f} ± {base.se.get(key) or 0:.3f}{after:>9.3f} ± {heldout.se[key]:.3f}"
              f"{after - before:>+10.3f} [{low:+.3f}, {high:+.3f}]")
    if any(key.endswith("loglik") for key in intervals):
        print("(loglik: the base model's mean log-likelihood per token of the same samples; higher = more like fluent "
              "text to the base model, so a fall beyond noise would mean the samples got worse as language)")
    if "judge_policy" in trained:
        print("(the training reward's held-out mean is judged by each iteration's own policy, so its change mixes a "
              "better policy with a different judge; a monitor judged by a fixed model does not)")
    return _verdict(intervals, names, primary=primary or TOTAL)


def run_mdpo_demo(recipe: str, output_dir: str, n_test: int) -> int:
    """mDPO on generated shapes: held-out image-conditional margin and preference accuracy, before vs after."""
    from .evaluation.heldout import image_conditional_margin

    def make_evaluate(run):
        test = run.datasets[run.script_args.dataset_test_split]
        test = test.select(range(min(n_test, len(test))))
        args = run.training_args
        knobs = dict(corruption=args.corruption, crop_scale=args.crop_scale, seed=12345, max_length=args.max_length)
        processor = run.load_processing_class()

        def evaluate(model):
            out = image_conditional_margin(model, processor, test, **knobs)
            return {"image_margin": out["image_margins"], "image_accuracy": [float(m > 0) for m in out["image_margins"]],
                    "preference_margin": out["preference_margins"],
                    "preference_accuracy": [float(m > 0) for m in out["preference_margins"]]}

        return evaluate

    run, trainer, minutes, before, after = _before_after("mdpo", recipe, output_dir, make_evaluate)
    title = (f"mDPO demo: {run.model_args.model_name_or_path}, {trainer.state.global_step} steps in {minutes:.1f} min "
             "(summed completion log-probs)")
    rows = [("image margin logp(c|image) - logp(c|corrupted)", "image_margin"),
            ("fraction logp(c|image) > logp(c|corrupted)", "image_accuracy"),
            ("preference margin logp(chosen) - logp(rejected)", "preference_margin"),
            ("preference accuracy logp(chosen) > logp(rejected)", "preference_accuracy")]
    intervals = _table(title, rows, before, after)
    names = {key: key.replace("_", " ") for _, key in rows}
    return _verdict(intervals, names, primary="image_margin")


def main(argv: list[str] | None = None) -> int:
    quiet.install()  # before the libraries load, as the trl-plugins command does (trl_plugins/compat/quiet.py)
    parser = argparse.ArgumentParser(prog="python -m trl_plugins.demo")
    parser.add_argument("method", nargs="?", default="raft", choices=["orpo", "mdpo", *SAMPLING_DEMOS, *RECIPE_DEMOS])
    parser.add_argument("--recipe", default=None, help="recipe path (default: the method's shipped demo recipe)")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--n_generations", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    recipe = args.recipe or f"demo/{args.method.replace('-', '_')}"
    output_dir = args.output_dir or f"outputs/{args.method}-demo"
    try:
        if args.method == "mdpo":
            return run_mdpo_demo(recipe, output_dir, min(args.n_test, 64))
        if args.method in SAMPLING_DEMOS:
            return run_sampling_demo(args.method, recipe, output_dir)
        if args.method in RECIPE_DEMOS:
            trainer, shipped, primary = RECIPE_DEMOS[args.method]
            return run_sampling_demo(trainer, args.recipe or shipped, output_dir, primary)
        return run_orpo_demo(recipe, output_dir, args.n_test, args.n_generations)
    except TrlPluginsError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
