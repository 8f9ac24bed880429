"""The sampling engine's reward-hacking guard (``evaluation/guard.py``, the rule; docs/monitors.md): mixed into
:class:`~.engine.SamplingEngine`. Before the first iteration the guard starts from the held-out scores before training,
or from the state the last finished iteration stored (resume); at the store stage it judges each iteration — the main
process decides and tells the others — and the verdict and the state go into the iteration's summary; ``warn`` prints
the verdict's line, ``stop`` ends the run and keeps the best iteration by the guard in ``output_dir/best``."""

from __future__ import annotations

import logging

from ..evaluation import guard
from ..evaluation.monitors import KL_TOKEN
from .records import IterationSummary

logger = logging.getLogger(__name__)


class GuardStage:
    """The guard's part of the engine; uses the engine's ``args``, ``store``, ``accelerator``, ``model``,
    ``processing_class``, ``reward_sources``, ``heldout_sources``, ``heldout_baseline`` and ``summaries``."""

    guard_state: guard.GuardState | None = None  # None: off, or no held-out set
    stopped: str | None = None  # why the guard ended the run early (the run's last line says it)

    def judge_iteration(self, summary: IterationSummary) -> None:
        """The guard's verdict on a finished iteration and its state after it, both into the summary (so a resumed
        run goes on from them). The main process decides and tells the others (the store's read rule)."""
        if self.guard_state is None or summary.heldout is None:
            return
        reward, checks = guard.inputs(summary.heldout.per_prompt, [f"heldout/{s.entry.name}"
                                                                   for s in self.heldout_sources])
        state, args = self.guard_state, self.args
        verdict, state = self.store.from_main(lambda: guard.judge(
            state, summary.iteration, reward, checks, kl_per_token=summary.heldout.means.get(KL_TOKEN),
            max_kl=args.max_kl, reward_name=" + ".join(s.entry.name for s in self.reward_sources), seed=args.seed))
        summary.guard, summary.guard_state, self.guard_state = verdict, state.to_json(), state

    def _act_on_guard(self, summary: IterationSummary) -> None:
        todo = guard.action(self.args, summary.guard) if summary.guard else None
        if todo is not None:
            self.accelerator.print(summary.guard["message"])
        if self.args.reward_hacking == "stop" and self.guard_state is not None:
            self._keep_best(summary.iteration)
            if todo == "stop":
                self.stopped = self._stop_line(summary.iteration)
                self.accelerator.print(f"reward_hacking: stop — {self.stopped}")

    def _stop_line(self, k: int) -> str:
        root = self.store.root
        return (f"stopped by the reward-hacking guard at iteration {k} of {self.args.num_iterations}: the kept "
                f"policy is iteration {self.guard_state.best_iteration} (best by the guard), saved to {root / 'best'}; "
                f"the last policy is in {root}")

    def _keep_best(self, current: int) -> None:
        """``reward_hacking: stop``: ``output_dir/best`` holds the best iteration by the guard. Saved when the model
        holds it (the base before training, an iteration right after it), after the summary that names it, so a run
        killed in between saves it on resume from the policy it loads."""
        best = self.guard_state.best_iteration
        if self.store.best_iteration() == best:
            return
        if best != current:
            logger.warning("%s holds no policy of iteration %d, the best by the guard: it cannot be saved now",
                           self.store.root / "best", best)
            return
        model, tokenizer = self.accelerator.unwrap_model(self.model), self.processing_class

        def save(path):
            model.save_pretrained(path)
            if tokenizer is not None:
                tokenizer.save_pretrained(path)

        self.store.save_best(best, save)

    def _start_guard(self, done: list[int]) -> None:
        """The guard before the first iteration to run: from the base's held-out scores, or from the state the last
        finished iteration stored (resume); a run the guard stopped stays stopped."""
        if self.args.reward_hacking == "off" or self.heldout_baseline is None:
            if self.args.reward_hacking != "off":
                self.accelerator.print("reward_hacking: nothing to judge without held-out prompts (heldout_prompts)")
            return
        last = self.summaries[-1] if done and self.summaries else None
        if last is not None and last.guard_state is not None:
            self.guard_state = guard.GuardState.from_json(last.guard_state)
        else:
            self.guard_state = guard.start(*guard.inputs(self.heldout_baseline.per_prompt,
                                                         [f"heldout/{s.entry.name}" for s in self.heldout_sources]))
        if self.args.reward_hacking == "stop":
            self._keep_best(done[-1] if done else 0)
            if last is not None and last.guard and last.guard.get("tripped"):
                self.stopped = self._stop_line(last.iteration)
