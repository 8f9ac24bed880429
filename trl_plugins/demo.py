"""The offline CPU demo: train a method on the embedded model and data, and show held-out numbers before vs after.

    python -m trl_plugins.demo orpo                 # what `./run demo` runs
    python -m trl_plugins.demo orpo --recipe recipes/demo/orpo.yaml --output_dir outputs/orpo-demo

For ORPO on the embedded Rotten Tomatoes pairs it prints:
- held-out preference accuracy: fraction of test pairs where the positive review is more likely than the negative
  one (per-token average log-prob), before vs after;
- mean VADER sentiment (compound, -1..1) of sampled reviews for the training prompt, before vs after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import TrlPluginsError


def _evaluate(model, tokenizer, test, prompts, n_generations, seed):
    from .evaluation import preference_accuracy
    from .sampling.generation import generate
    from .builtin_rewards import vader_sentiment

    pref = preference_accuracy(model, tokenizer, test, batch_size=16, max_length=128)
    samples = generate(model, tokenizer, prompts[:n_generations], max_new_tokens=40, temperature=0.7, seed=seed)
    scores = vader_sentiment(prompts[:n_generations], samples)
    return {"accuracy": pref["accuracy"], "margin": pref["margin"], "vader": sum(scores) / len(scores)}, samples


def run_orpo_demo(recipe: str, output_dir: str, n_test: int, n_generations: int) -> int:
    from . import runner
    from .registry import get_registry

    spec = get_registry().trainer("orpo")
    argv = ["--config", recipe, "--output_dir", output_dir, "--overwrite_output_dir", "true"]
    run = runner.prepare_run(spec, argv)  # every input check happens here, before the model loads
    test = run.datasets[run.script_args.dataset_test_split].select(range(n_test))
    prompts = [test[i % len(test)]["prompt"] for i in range(n_generations)]

    tokenizer = run.load_processing_class()
    base = run.load_model()
    print(f"\n[1/3] evaluating the base model on {len(test)} held-out pairs and {n_generations} generations ...")
    before, before_samples = _evaluate(base, tokenizer, test, prompts, n_generations, run.training_args.seed)
    del base

    print("\n[2/3] training ORPO ...")
    start = time.time()
    trainer = runner.train(run)
    minutes = (time.time() - start) / 60

    print("\n[3/3] evaluating the trained model ...")
    after, after_samples = _evaluate(trainer.model, tokenizer, test, prompts, n_generations, run.training_args.seed)

    print(f"\nORPO demo: {run.model_args.model_name_or_path}, {trainer.state.global_step} steps in {minutes:.1f} min")
    print(f"{'held-out metric':<46}{'before':>9}{'after':>9}{'change':>9}")
    rows = [
        ("preference accuracy (logp chosen > rejected)", "accuracy"),
        ("mean logp margin chosen - rejected (nats/token)", "margin"),
        ("mean VADER sentiment of generations (-1..1)", "vader"),
    ]
    for label, key in rows:
        print(f"{label:<46}{before[key]:>9.3f}{after[key]:>9.3f}{after[key] - before[key]:>+9.3f}")
    print("\nsample generations (before -> after):")
    for b, a in list(zip(before_samples, after_samples))[:3]:
        print(f"  - {b[:110]!r}\n    -> {a[:110]!r}")
    improved = after["accuracy"] > before["accuracy"] and after["vader"] > before["vader"]
    print("\nresult:", "improved on both held-out metrics" if improved else "did NOT improve on both metrics")
    return 0 if improved else 1


def run_mdpo_demo(recipe: str, output_dir: str, n_test: int) -> int:
    """mDPO on generated shapes: held-out image-conditional margin and preference accuracy, before vs after."""
    from . import runner
    from .registry import get_registry
    from .evaluation import image_conditional_margin

    spec = get_registry().trainer("mdpo")
    argv = ["--config", recipe, "--output_dir", output_dir, "--overwrite_output_dir", "true"]
    run = runner.prepare_run(spec, argv)  # every input check happens here, before the model loads
    test = run.datasets[run.script_args.dataset_test_split]
    test = test.select(range(min(n_test, len(test))))
    args = run.training_args
    knobs = dict(corruption=args.corruption, crop_scale=args.crop_scale, seed=12345, max_length=args.max_length)

    processor = run.load_processing_class()
    base = run.load_model()
    print(f"\n[1/3] scoring the base model on {len(test)} held-out image questions ...")
    before = image_conditional_margin(base, processor, test, **knobs)
    del base

    print("\n[2/3] training mDPO ...")
    start = time.time()
    trainer = runner.train(run)
    minutes = (time.time() - start) / 60

    print("\n[3/3] scoring the trained model ...")
    after = image_conditional_margin(trainer.model, processor, test, **knobs)
    print(f"\nmDPO demo: {run.model_args.model_name_or_path}, {trainer.state.global_step} steps in {minutes:.1f} min")
    print(f"{'held-out metric (summed completion log-probs)':<58}{'before':>9}{'after':>9}{'change':>9}")
    rows = [
        ("image-conditional margin logp(c|image) - logp(c|corrupted)", "image_margin"),
        ("fraction with logp(c|image) > logp(c|corrupted)", "image_accuracy"),
        ("preference margin logp(chosen) - logp(rejected)", "preference_margin"),
        ("preference accuracy logp(chosen) > logp(rejected)", "preference_accuracy"),
    ]
    for label, key in rows:
        print(f"{label:<58}{before[key]:>9.3f}{after[key]:>9.3f}{after[key] - before[key]:>+9.3f}")
    improved = after["image_margin"] > before["image_margin"]
    print("\nresult:", "the held-out image-conditional margin rose" if improved else "the margin did NOT rise")
    return 0 if improved else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trl_plugins.demo")
    parser.add_argument("method", nargs="?", default="orpo", choices=["orpo", "mdpo"])
    parser.add_argument("--recipe", default=None, help="recipe path (default: the method's shipped demo recipe)")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--n_generations", type=int, default=32)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    recipe = args.recipe or f"demo/{args.method}"
    output_dir = args.output_dir or f"outputs/{args.method}-demo"
    try:
        if args.method == "mdpo":
            return run_mdpo_demo(recipe, output_dir, min(args.n_test, 64))
        return run_orpo_demo(recipe, output_dir, args.n_test, args.n_generations)
    except TrlPluginsError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
