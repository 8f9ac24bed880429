"""The built-in trainers and reward functions, registered through the ``trl_plugins`` entry point group
exactly the way a third-party plugin registers its own (see pyproject.toml and docs/plugins.md).

This module stays light: import strings only, so ``trl-plugins list`` never imports torch.
"""

from __future__ import annotations

from .hookspecs import hookimpl

RECIPES = "trl_plugins:recipes"


@hookimpl
def register_trainers(register):
    register(
        "orpo",
        trainer="trl_plugins.trainers.orpo:ORPOTrainer",
        config="trl_plugins.trainers.orpo:ORPOConfig",
        summary="ORPO: SFT plus an odds-ratio preference term, no reference model (Hong et al. 2024).",
        paper="https://arxiv.org/abs/2403.07691",
        data_format="preference",
        check_data="trl_plugins.data:check_preference_pairs",
        recipes=RECIPES,
    )
    register(
        "margin-rm",
        trainer="trl_plugins.trainers.margin_reward:MarginRewardTrainer",
        config="trl_plugins.trainers.margin_reward:MarginRewardConfig",
        summary="Reward model with Llama 2's margin loss; margins from rating labels, score differences or a column.",
        paper="https://arxiv.org/abs/2307.09288",
        data_format="preference",
        optional_columns=("prompt", "margin", "rating", "chosen_score", "rejected_score"),
        model_kind="sequence-classification",
        check_data="trl_plugins.trainers.margin_reward:check_margin_data",
        recipes=RECIPES,
    )


@hookimpl
def register_reward_functions(register):
    register(
        "vader_sentiment",
        function="trl_plugins.reward_functions:vader_sentiment",
        summary="VADER compound sentiment of the completion in [-1, 1] (rule-based, no model).",
    )
