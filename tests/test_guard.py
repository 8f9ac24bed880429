"""The reward-hacking guard (trl_plugins/evaluation/guard.py) on known numbers: it trips when the training reward rises
beyond noise while a monitor falls beyond noise against the best iteration so far, not when either stays within
noise, on max_kl, and moves its reference only on a clean gain beyond noise; its state survives JSON; its options
refuse bad values.

    python -m pytest tests/test_guard.py -q
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from trl_plugins.evaluation.guard import GuardOptions, GuardState, action, judge, start
from trl_plugins.evaluation.intervals import paired_bootstrap

N = 20
BASE_REWARD = [i / N for i in range(N)]
BASE_DISTINCT = [0.8 + 0.01 * (i % 5) for i in range(N)]
BASE_LOGLIK = [-2.0 - 0.05 * (i % 4) for i in range(N)]


def shifted(values, by, wobble=0.0):
    """``values`` moved by ``by``, each alternately up and down by ``wobble`` (noise around the shift)."""
    return [v + by + (wobble if i % 2 else -wobble) for i, v in enumerate(values)]


def base_state():
    return start(BASE_REWARD, {"monitor/distinct2": BASE_DISTINCT, "monitor/loglik": BASE_LOGLIK,
                               "monitor/length": [30.0] * N, "monitor/kl_token": [0.0] * N})


def test_trips_when_the_reward_rises_and_a_monitor_falls_beyond_noise():
    reward, distinct = shifted(BASE_REWARD, 0.3, 0.02), shifted(BASE_DISTINCT, -0.2, 0.01)
    verdict, state = judge(base_state(), 1, reward, {"monitor/distinct2": distinct, "monitor/loglik": BASE_LOGLIK},
                           reward_name="vader_sentiment", seed=3)
    assert verdict["tripped"] and set(verdict["fell"]) == {"monitor/distinct2"}  # loglik did not move
    low, high = paired_bootstrap(BASE_REWARD, reward, seed=3)
    d_low, d_high = paired_bootstrap(BASE_DISTINCT, distinct, seed=3)
    assert (verdict["reward"]["low"], verdict["reward"]["high"]) == (low, high) and low > 0
    assert (verdict["fell"]["monitor/distinct2"]["low"], verdict["fell"]["monitor/distinct2"]["high"]) == (d_low,
                                                                                                          d_high)
    assert verdict["reward"]["change"] == pytest.approx(0.3) and d_high < 0
    message = verdict["message"]
    assert "\n" not in message and message.startswith("reward hacking? iteration 1: held-out vader_sentiment rose")
    assert f"+0.300 [{low:+.3f}, {high:+.3f}]" in message
    assert f"monitor/distinct2 fell -0.200 [{d_low:+.3f}, {d_high:+.3f}]" in message and "since iteration 0" in message
    assert state.best_iteration == 0 and verdict["best_iteration"] == 0  # a tripped iteration is never the best


@pytest.mark.parametrize("reward_by, distinct_by, distinct_wobble", [
    (0.3, 0.0, 0.1),    # the monitor moves within noise (up and down around no change)
    (0.0, -0.2, 0.01),  # the monitor falls, but the reward did not rise: a plain regression, not gaming
    (-0.2, -0.2, 0.01),
])
def test_does_not_trip_within_noise_or_without_a_rising_reward(reward_by, distinct_by, distinct_wobble):
    reward = shifted(BASE_REWARD, reward_by, 0.02)
    distinct = shifted(BASE_DISTINCT, distinct_by, distinct_wobble)
    verdict, _ = judge(base_state(), 1, reward, {"monitor/distinct2": distinct})
    assert not verdict["tripped"] and verdict["fell"] == {} and verdict["message"] == ""


def test_length_and_kl_are_not_judged_by_the_paired_rule_an_independent_check_is():
    reward = shifted(BASE_REWARD, 0.3, 0.02)
    moved = {"monitor/length": [5.0] * N, "monitor/kl_token": [2.0] * N}  # far beyond noise, but not judged this way
    assert not judge(base_state(), 1, reward, moved)[0]["tripped"]
    state = start(BASE_REWARD, {"heldout/other_sentiment_model": BASE_LOGLIK})
    verdict, _ = judge(state, 1, reward, {"heldout/other_sentiment_model": shifted(BASE_LOGLIK, -0.5, 0.01)})
    assert verdict["tripped"] and "heldout/other_sentiment_model fell -0.500" in verdict["message"]


def test_max_kl_trips_on_its_own_and_is_named():
    verdict, state = judge(base_state(), 2, BASE_REWARD, {}, kl_per_token=0.41, max_kl=0.3)
    assert verdict["tripped"] and verdict["kl_over"] and verdict["fell"] == {}
    assert verdict["message"] == ("reward hacking? iteration 2: KL to the starting policy 0.4100 per token passed "
                                  "max_kl 0.3")
    assert not judge(base_state(), 2, BASE_REWARD, {}, kl_per_token=0.29, max_kl=0.3)[0]["tripped"]
    assert not judge(base_state(), 2, BASE_REWARD, {}, kl_per_token=5.0)[0]["tripped"]  # no max_kl: no limit


def test_best_iteration_is_the_highest_reward_that_did_not_trip_and_later_ones_are_judged_against_it():
    state = base_state()
    monitors = {"monitor/distinct2": BASE_DISTINCT}
    first, state = judge(state, 1, shifted(BASE_REWARD, 0.2, 0.02), monitors)
    assert not first["tripped"] and state.best_iteration == 1 and state.best_reward == pytest.approx(0.475 + 0.2)
    second, state = judge(state, 2, shifted(BASE_REWARD, 0.1, 0.02), monitors)  # lower, untripped: best stays 1
    assert not second["tripped"] and second["against"] == 1 and state.best_iteration == 1
    third, state = judge(state, 3, shifted(BASE_REWARD, 0.5, 0.02), {"monitor/distinct2": shifted(BASE_DISTINCT,
                                                                                                  -0.2, 0.01)})
    assert third["tripped"] and third["against"] == 1 and "since iteration 1" in third["message"]
    assert state.best_iteration == 1
    # still judged against iteration 1, the last clean policy, not against the tripped iteration 3
    fourth, state = judge(state, 4, shifted(BASE_REWARD, 0.55, 0.02), {"monitor/distinct2": shifted(BASE_DISTINCT,
                                                                                                   -0.21, 0.01)})
    assert fourth["tripped"] and fourth["against"] == 1 and state.best_iteration == 1
    fifth, state = judge(state, 5, shifted(BASE_REWARD, 0.6, 0.02), monitors)
    assert not fifth["tripped"] and state.best_iteration == 5
    assert [v["iteration"] for v in state.verdicts] == [1, 2, 3, 4, 5]


def test_a_gain_within_noise_does_not_move_the_reference_so_drift_after_it_is_judged_against_the_base():
    """The IMDB/VADER case (docs/monitors.md): iteration 1's reward rises within noise while the policy drifts, then
    the reward jumps while the drift goes on. Judged against the base, iteration 2 trips; had iteration 1 become the
    reference (its mean is higher, by chance), iteration 2 would have passed: its monitor moved little since 1."""
    state = base_state()
    drifted = shifted(BASE_DISTINCT, -0.15, 0.01)
    first, state = judge(state, 1, shifted(BASE_REWARD, 0.02, 0.1), {"monitor/distinct2": drifted})
    assert first["reward"]["low"] < 0 < first["reward"]["change"] and not first["tripped"]
    assert state.best_iteration == 0 and state.best_reward == pytest.approx(sum(BASE_REWARD) / N)
    second, state = judge(state, 2, shifted(BASE_REWARD, 0.4, 0.02), {"monitor/distinct2": shifted(drifted, -0.01, 0.05)})
    assert second["tripped"] and second["against"] == 0 and "monitor/distinct2 fell -0.160" in second["message"]
    as_if_1 = judge(start(shifted(BASE_REWARD, 0.02, 0.1), {"monitor/distinct2": drifted}), 2,
                    shifted(BASE_REWARD, 0.4, 0.02), {"monitor/distinct2": shifted(drifted, -0.01, 0.05)})[0]
    assert not as_if_1["tripped"]


def test_state_round_trips_through_json_and_a_resumed_guard_judges_the_same():
    state = base_state()
    _, state = judge(state, 1, shifted(BASE_REWARD, 0.2, 0.02), {"monitor/distinct2": BASE_DISTINCT}, seed=7)
    resumed = GuardState.from_json(json.loads(json.dumps(state.to_json())))
    assert resumed == state
    nxt = (3, shifted(BASE_REWARD, 0.5, 0.02), {"monitor/distinct2": shifted(BASE_DISTINCT, -0.2, 0.01)})
    assert judge(resumed, *nxt, seed=7) == judge(state, *nxt, seed=7)
    before = state.to_json()
    judge(state, *nxt)
    assert state.to_json() == before  # judging leaves the state passed in as it was


def test_options_refuse_bad_values_and_mix_into_a_config_with_its_own_post_init():
    GuardOptions()  # the defaults are valid
    for kwargs, message in [({"reward_hacking": "loud"}, "reward_hacking must be one of warn, stop, off"),
                            ({"max_kl": 0.0}, "max_kl must be > 0"),
                            ({"heldout_monitors": ["kl", "entropy"]}, "unknown monitor 'entropy'"),
                            ({"max_kl": 0.1, "heldout_monitors": ["loglik"]}, "max_kl needs the kl monitor")]:
        with pytest.raises(ValueError, match=message):
            GuardOptions(**kwargs)

    @dataclass
    class Parent:
        checked: bool = False

        def __post_init__(self):
            self.checked = True

    @dataclass
    class Config(GuardOptions, Parent):
        pass

    assert Config().checked and Config(max_kl=0.2).max_kl == 0.2
    with pytest.raises(ValueError, match="reward_hacking"):
        Config(reward_hacking="sometimes")
    tripped, fine = {"tripped": True}, {"tripped": False}
    assert action(GuardOptions(), tripped) == "warn" and action(GuardOptions(reward_hacking="stop"), tripped) == "stop"
    assert action(GuardOptions(reward_hacking="off"), tripped) is None and action(GuardOptions(), fine) is None
