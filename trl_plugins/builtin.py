"""The built-in trainers, reward functions and generation backend, registered through the ``trl_plugins`` entry point group
exactly the way a third-party plugin registers its own (see pyproject.toml and docs/plugins.md).

This module stays light: import strings only, so ``trl-plugins list`` never imports torch.
"""

from __future__ import annotations

from .hookspecs import hookimpl

RECIPES = "trl_plugins:recipes"
# what the four sampling trainers share: prompt-only data and one method class (rewards resolved before loading)
SAMPLING = {"data_format": "prompt_only", "method": "trl_plugins.sampling.method:SamplingMethod", "recipes": RECIPES}
# the iterative preference trainers: the same engine, pairs and a DPO/ORPO phase instead of selection and SFT
PREFERENCE_SAMPLING = dict(SAMPLING, method="trl_plugins.sampling.preference_method:PreferenceSamplingMethod")


@hookimpl
def register_trainers(register):
    register(
        "orpo",
        trainer="trl_plugins.trainers.orpo:ORPOTrainer",
        config="trl_plugins.trainers.orpo:ORPOConfig",
        summary="ORPO: SFT plus an odds-ratio preference term, no reference model (Hong et al. 2024).",
        paper="https://arxiv.org/abs/2403.07691",
        data_format="preference",
        method="trl_plugins.trainers.orpo:ORPOMethod",
        recipes=RECIPES,
    )
    register(
        "mdpo",
        trainer="trl_plugins.trainers.mdpo.trainer:MDPOTrainer",
        config="trl_plugins.trainers.mdpo.trainer:MDPOConfig",
        summary="mDPO: DPO + image-conditional + anchored preference terms for vision-language models (Wang et al. 2024).",
        paper="https://arxiv.org/abs/2406.11839",
        data_format="vision_preference",
        model_kind="vision-language",
        method="trl_plugins.trainers.mdpo.trainer:MDPOMethod",
        recipes=RECIPES,
    )
    register(
        "kto-weighted",
        trainer="trl_plugins.trainers.kto_weighted.trainer:KTOWeightedTrainer",
        config="trl_plugins.trainers.kto_weighted.trainer:KTOWeightedConfig",
        summary="KTO with class weights from the label counts (paper Eq. 8), per-example weights, mixed batches.",
        paper="https://arxiv.org/abs/2402.01306",
        data_format="unpaired_preference",
        other_formats=("preference",),  # paired rows are unpaired by the trainer; the method's check decides
        required_columns=(),
        optional_columns=("prompt", "completion", "label", "chosen", "rejected"),
        method="trl_plugins.trainers.kto_weighted.trainer:KTOWeightedMethod",
        recipes=RECIPES,
    )
    register(
        "margin-rm",
        trainer="trl_plugins.trainers.margin_rm.trainer:MarginRewardTrainer",
        config="trl_plugins.trainers.margin_rm.trainer:MarginRewardConfig",
        summary="Reward model with Llama 2's margin loss; margins from rating labels, score differences or a column.",
        paper="https://arxiv.org/abs/2307.09288",
        data_format="preference",
        optional_columns=("prompt", "margin", "rating", "chosen_score", "rejected_score"),
        model_kind="sequence-classification",
        method="trl_plugins.trainers.margin_rm.trainer:MarginRewardMethod",
        recipes=RECIPES,
    )
    register(
        "raft",
        trainer="trl_plugins.trainers.raft:RAFTTrainer",
        config="trl_plugins.trainers.raft:RAFTConfig",
        summary="RAFT: sample K per prompt, keep the best (or global top-alpha), SFT, repeat (Dong et al. 2023).",
        paper="https://arxiv.org/abs/2304.06767",
        **SAMPLING,
    )
    register(
        "rest-em",
        trainer="trl_plugins.trainers.rest:ReSTEMTrainer",
        config="trl_plugins.trainers.rest:ReSTEMConfig",
        summary="ReST-EM: keep correct samples (binary reward, capped per prompt), fine-tune the base model each iteration.",
        paper="https://arxiv.org/abs/2312.06585",
        **SAMPLING,
    )
    register(
        "rejection-sampling",
        trainer="trl_plugins.trainers.rejection_sampling:RejectionSamplingTrainer",
        config="trl_plugins.trainers.rejection_sampling:RejectionSamplingConfig",
        summary="Rejection-sampling fine-tuning: best of K per prompt, best-ever pool, SFT (Llama 2 §3.2.3).",
        paper="https://arxiv.org/abs/2307.09288",
        **SAMPLING,
    )
    register(
        "rest",
        trainer="trl_plugins.trainers.rest:ReSTTrainer",
        config="trl_plugins.trainers.rest:ReSTConfig",
        summary="ReST: Grow (N samples per prompt), then Improve steps on rising reward thresholds (Gulcehre et al. 2023).",
        paper="https://arxiv.org/abs/2308.08998",
        **SAMPLING,
    )
    register(
        "iterative-dpo",
        trainer="trl_plugins.trainers.iterative_dpo:IterativeDPOTrainer",
        config="trl_plugins.trainers.iterative_dpo:IterativeDPOConfig",
        summary="Iterative DPO / IRPO: sample K per prompt, pair (best-worst or correct-incorrect), DPO, repeat "
                "(Xiong et al. 2024; Pang et al. 2024).",
        paper="https://arxiv.org/abs/2312.11456",
        **PREFERENCE_SAMPLING,
    )
    register(
        "iterative-orpo",
        trainer="trl_plugins.trainers.iterative_orpo:IterativeORPOTrainer",
        config="trl_plugins.trainers.iterative_orpo:IterativeORPOConfig",
        summary="Iterative ORPO: sample K per prompt, pair them, ORPO (no reference model), repeat.",
        paper="https://arxiv.org/abs/2403.07691",
        **PREFERENCE_SAMPLING,
    )


@hookimpl
def register_reward_functions(register):
    register(
        "vader_sentiment",
        function="trl_plugins.builtin_rewards:vader_sentiment",
        summary="VADER compound sentiment of the completion in [-1, 1] (rule-based, no model).",
    )
    register(
        "exact_match",
        function="trl_plugins.builtin_rewards:exact_match",
        summary="1 if the completion's final answer (last number, ####, or \\boxed{}) equals the `answer` column, else 0.",
        reads_columns=("answer",),
    )


@hookimpl
def register_generation_backends(register):
    register(
        "transformers",
        backend="trl_plugins.sampling.generation:TransformersBackend",
        summary="Batched sampling with the transformers model itself: the fast decode loop, or model.generate.",
    )
