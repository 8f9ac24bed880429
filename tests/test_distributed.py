"""Every trainer under 2 processes (torchrun, gloo, CPU) against 1 process with the same global batch.

One torchrun launch runs all eight trainers on tiny models (tests/multiprocess_driver.py); the 1-process references
run in this process. Sampling trainers: the processes share the prompts out with no overlap, the gathered files
hold every prompt x K once, and the selection is the 1-process rule applied to the gathered table."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CPU_RUN, PROMPTS, REPO, TESTS, method_of, read_jsonl, write_jsonl
from tiny import preference_rows, save_tiny_causal_lm
from tiny_vlm import save_tiny_vlm, vision_rows

TRAINERS = ("orpo", "kto-weighted", "margin-rm", "mdpo", "raft", "rejection-sampling", "rest", "rest-em")


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def _jobs(root: Path, processes: int) -> list[dict]:
    """The eight trainers, global batch 4: per-device 4 in one process, 2 in two."""
    import yaml

    models = root / "models"
    if not models.exists():
        save_tiny_causal_lm(models / "lm")
        save_tiny_vlm(models / "vlm")
        write_jsonl(root / "data" / "pairs.jsonl", preference_rows(16))
        pairs = preference_rows(16)
        write_jsonl(root / "data" / "kto.jsonl",  # label-sorted: mixing must give every device batch both classes
                    [{"prompt": r["prompt"], "completion": r["chosen"], "label": True} for r in pairs[:8]]
                    + [{"prompt": r["prompt"], "completion": r["rejected"], "label": False} for r in pairs[:8]])
        (root / "images").mkdir()
        write_jsonl(root / "data" / "vision.jsonl", vision_rows(8, image_as="path", directory=root / "images"))
        write_jsonl(root / "data" / "prompts.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS])
    batch = 4 // processes
    common = {**CPU_RUN, "per_device_train_batch_size": batch, "max_steps": 2, "seed": 0, "learning_rate": 1e-2}
    lm, data = str(models / "lm"), root / "data"
    sampling = {"model_name_or_path": lm, "dataset_name": str(data / "prompts.jsonl"), "num_iterations": 2,
                "num_generations": 4, "max_new_tokens": 6, "generation_batch_size": 8, "max_length": 64,
                "reward_funcs": ["sampling_rewards:good_words"], "keep_unfinished": True, "max_steps": 1}
    configs = {
        "orpo": {"model_name_or_path": lm, "dataset_name": str(data / "pairs.jsonl"), "max_length": 64},
        "kto-weighted": {"model_name_or_path": lm, "dataset_name": str(data / "kto.jsonl"), "max_length": 64,
                         "max_steps": 4},
        "margin-rm": {"model_name_or_path": lm, "dataset_name": str(data / "pairs.jsonl"), "max_length": 64},
        # blank corruption: no random draws, so both runs corrupt the same way (crops are drawn per process)
        "mdpo": {"model_name_or_path": str(models / "vlm"), "dataset_name": str(data / "vision.jsonl"),
                 "corruption": "blank"},
        "raft": sampling,
        "rejection-sampling": sampling,
        "rest": {**sampling, "improve_steps": 2, "improve_thresholds": [0.5, 0.75]},
        "rest-em": {**sampling, "reward_funcs": ["sampling_rewards:even_length"], "max_per_prompt": 2},
    }
    jobs = []
    for name in TRAINERS:
        out = root / f"n{processes}" / name
        out.mkdir(parents=True, exist_ok=True)
        recipe = out / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({**common, **configs[name], "output_dir": str(out / "run")}))
        jobs.append({"name": name, "argv": ["--config", str(recipe)], "result": str(out / "result.json")})
    return jobs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{processes: {trainer: result}}`` for 1 process (in here) and 2 processes (one torchrun launch)."""
    root = tmp_path_factory.mktemp("distributed")
    _ROOT[:] = [root]
    one, two = _jobs(root, 1), _jobs(root, 2)
    path = root / "jobs2.json"
    path.write_text(json.dumps(two))
    launch = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--standalone", str(TESTS / "multiprocess_driver.py"), str(path)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    from multiprocess_driver import run_job

    try:
        for job in one:  # the 1-process references, while the 2-process run works on the other core
            run_job(job)
        log, _ = launch.communicate(timeout=600)
    finally:
        if launch.poll() is None:  # never leave a hung process group behind
            os.killpg(launch.pid, 9)
    assert launch.returncode == 0, log[-6000:]
    return {n: {job["name"]: json.loads(Path(job["result"]).read_text()) for job in jobs}
            for n, jobs in ((1, one), (2, two))}


_ROOT: list[Path] = []


def _output_dir(name: str, processes: int = 2) -> Path:
    return _ROOT[0] / f"n{processes}" / name / "run"


def _losses(result: dict, key: str = "loss") -> list[float]:
    return [log[key] for log in result["log_history"] if key in log and "train_runtime" not in log]


@pytest.mark.distributed
def test_runs_really_used_two_processes(runs):
    for name in TRAINERS:
        assert runs[2][name]["num_processes"] == 2 and len(runs[2][name]["processes"]) == 2, name
        assert runs[1][name]["num_processes"] == 1, name


def _relative(a: list[float], b: list[float]) -> list[float]:
    assert len(a) == len(b) and a, (a, b)
    return [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)]


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["orpo", "margin-rm", "mdpo"])
def test_first_step_losses_equal_one_process(runs, name):
    """Same global batch, per-device batch halved: the logged loss of every step equals the 1-process loss.

    ORPO's NLL term is normalised by the tokens of the global batch (trainers/orpo.py ``_nll_token_count``);
    mDPO's terms are per-sequence sums; margin-rm's loss is a mean over pairs."""
    assert max(_relative(_losses(runs[1][name]), _losses(runs[2][name]))) < 1e-4
    if name == "mdpo":
        for key in ("loss/dpo", "loss/conditional", "loss/anchor"):
            assert max(_relative(_losses(runs[1][name], key), _losses(runs[2][name], key))) < 1e-4, key


@pytest.mark.distributed
def test_kto_mixed_batches_hold_per_device_and_losses_match_while_kl_is_zero(runs):
    """Every per-device batch of both processes holds both classes. The loss equals the 1-process loss while the
    KL reference point is 0 (clamped); once it is positive the two differ by design: KTO (as TRL) estimates it per
    device from mismatched pairs inside each device's batch, averaged over devices — other pairs than one
    process's rotation of the whole batch."""
    for process in runs[2]["kto-weighted"]["processes"]:
        assert process["batches"] and all(any(b) and not all(b) for b in process["batches"]), process
    one, two = runs[1]["kto-weighted"], runs[2]["kto-weighted"]
    kl = [max(a, b) for a, b in zip(_losses(one, "kl"), _losses(two, "kl"))]
    steps = [i for i, value in enumerate(kl) if value == 0]
    assert steps, kl
    differences = _relative(_losses(one), _losses(two))
    assert max(differences[i] for i in steps) < 1e-4, (differences, kl)


SAMPLING = ("raft", "rejection-sampling", "rest", "rest-em")


@pytest.mark.distributed
@pytest.mark.parametrize("name", SAMPLING)
def test_sampling_processes_share_prompts_once_and_select_by_the_one_process_rule(runs, name):
    """The two processes generate for disjoint halves of every iteration's prompts; the gathered generations hold
    every prompt x K once; the selection written is the trainer's rule applied to the gathered table."""
    from trl_plugins.sampling import selection

    result = runs[2][name]
    out = _output_dir(name)
    generated = [json.loads(p) for process in result["processes"] for call in process["generated"] for p in call]
    per_process = [{p for call in process["generated"] for p in call} for process in result["processes"]]
    assert all(per_process) and not per_process[0] & per_process[1]
    for k in (1, 2):
        rows = read_jsonl(out / f"iteration_{k}" / "generations.jsonl")
        rewards = [r["reward"] for r in read_jsonl(out / f"iteration_{k}" / "rewards.jsonl")]
        assert sorted((r["row"], r["sample"]) for r in rows) == [(i, j) for i in range(len(PROMPTS)) for j in range(4)]
        groups = [r["row"] for r in rows]
        if name == "rest":
            files = [f"selection_step{step}.jsonl" for step in (1, 2)]
            expected = [selection.threshold(groups, rewards, tau, "percentile") for tau in (0.5, 0.75)]
        else:
            files = ["selection.jsonl"]
            expected = [selection.binary_capped(groups, rewards, 2) if name == "rest-em"
                        else selection.best_of_n(groups, rewards)]
        for file, indices in zip(files, expected):
            assert [s["index"] for s in read_jsonl(out / f"iteration_{k}" / file)] == indices, (name, k, file)
    assert len(generated) == 2 * len(PROMPTS)  # two iterations, each prompt generated for once




def _raft_recipe(root: Path, output_dir: Path) -> str:
    import yaml

    if not (root / "lm").exists():
        save_tiny_causal_lm(root / "lm")
        write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    config = {**CPU_RUN, "model_name_or_path": str(root / "lm"), "dataset_name": str(root / "prompts.jsonl"),
              "output_dir": str(output_dir), "reward_funcs": ["sampling_rewards:good_words"], "num_iterations": 3,
              "num_generations": 4, "max_new_tokens": 6, "generation_batch_size": 8, "per_device_train_batch_size": 2,
              "max_steps": 12, "max_length": 64, "learning_rate": 1e-2, "seed": 5, "keep_unfinished": True}
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.distributed
def test_raft_two_processes_killed_in_iteration_2_resumes_to_the_same_selections_with_2_or_1(tmp_path):
    """`trl-plugins train raft --accelerate_config multi_cpu` really runs 2 processes; a 2-process torchrun run
    killed inside iteration 2 and restarted with --resume_from_checkpoint regenerates nothing that is on disk and
    ends with the selections of the uninterrupted run; restarted with 1 process instead, it finishes too."""
    import signal
    import time

    full = tmp_path / "full"
    done = subprocess.run([sys.executable, "-m", "trl_plugins", "train", "raft", "--config",
                           _raft_recipe(tmp_path, full), "--accelerate_config", "multi_cpu"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("raft done") == 1  # printed by the main process only
    assert {json.loads(line)["processes"] for line in (full / "sampling_summary.jsonl").read_text().splitlines()} == {2}

    killed = tmp_path / "killed"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "trl_plugins", "train", "raft", "--config", _raft_recipe(tmp_path, killed)]
    launch = subprocess.Popen(torchrun, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while not (killed / "iteration_2" / "generations.jsonl").exists() and launch.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(launch.pid, signal.SIGKILL)
    launch.wait()
    assert (killed / "iteration_1" / "summary.json").is_file()
    assert not (killed / "iteration_2" / "summary.json").exists(), "the run finished iteration 2 before the kill"
    on_disk = (killed / "iteration_2" / "generations.jsonl").read_bytes()
    shutil.copytree(killed, tmp_path / "killed_then_one_process")

    resumed = subprocess.run(torchrun + ["--resume_from_checkpoint", "true"], env=_env(), capture_output=True,
                             text=True, timeout=600, start_new_session=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (killed / "iteration_2" / "generations.jsonl").read_bytes() == on_disk
    for k in (1, 2, 3):
        a, b = read_jsonl(full / f"iteration_{k}" / "selection.jsonl"), read_jsonl(killed / f"iteration_{k}" / "selection.jsonl")
        assert [(s["index"], s["completion"]) for s in a] == [(s["index"], s["completion"]) for s in b], k
        rows = read_jsonl(killed / f"iteration_{k}" / "generations.jsonl")
        assert sorted((r["row"], r["sample"]) for r in rows) == [(i, j) for i in range(len(PROMPTS)) for j in range(4)]
    assert [json.loads(line)["iteration"] for line in (killed / "sampling_summary.jsonl").read_text().splitlines()] == [
        1, 2, 3]

    # The same killed run restarted with a different number of processes (1): the files on disk do not depend on it
    # (generations are stored gathered, in input order; the policy is saved whole), so it goes on where it stopped.
    other = tmp_path / "killed_then_one_process"
    single = subprocess.run([sys.executable, "-m", "trl_plugins", "train", "raft", "--config",
                             _raft_recipe(tmp_path, other), "--resume_from_checkpoint", "true"],
                            env=_env(), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    assert (other / "iteration_2" / "generations.jsonl").read_bytes() == on_disk
    for k in (1, 2):  # iteration 3 is sampled afresh by one process (its own seed stream), so only 1-2 must match
        a, b = read_jsonl(full / f"iteration_{k}" / "selection.jsonl"), read_jsonl(other / f"iteration_{k}" / "selection.jsonl")
        assert [(s["index"], s["completion"]) for s in a] == [(s["index"], s["completion"]) for s in b], k
    rows = read_jsonl(other / "iteration_3" / "generations.jsonl")
    assert sorted((r["row"], r["sample"]) for r in rows) == [(i, j) for i in range(len(PROMPTS)) for j in range(4)]
    summaries = [json.loads(line) for line in (other / "sampling_summary.jsonl").read_text().splitlines()]
    assert [(s["iteration"], s["processes"]) for s in summaries] == [(1, 2), (2, 1), (3, 1)]


def test_iterative_dpo_two_processes_build_the_pairs_and_losses_of_one_from_the_same_samples(tmp_path):
    """The same samples and rewards on disk (an unfinished iteration 1, resumed): 2 processes (torchrun, per-device
    batch 2) write the pairs one process writes (per-device batch 4, the same global batch), and each phase's mean
    loss agrees — the reference log-probs were computed on shards of the pairs and gathered."""
    import yaml

    sys.path.insert(0, str(TESTS))
    from sampling_rewards import good_words

    save_tiny_causal_lm(tmp_path / "lm")
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    words = ["good movie", "a great plot", "bad", "the best story , good", "boring film", "the acting"]
    samples = [{"row": r, "sample": j, "prompt": p, "completion": " " + words[(r + j) % len(words)],
                "num_tokens": len(words[(r + j) % len(words)].split()), "finished": True}
               for r, p in enumerate(PROMPTS) for j in range(4)]
    rewards = good_words(None, [s["completion"] for s in samples])
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"n{processes}"
        write_jsonl(out / "iteration_1" / "generations.jsonl", samples)
        write_jsonl(out / "iteration_1" / "rewards.jsonl", [{"reward": r, "reward/good_words": r} for r in rewards])
        config = {**CPU_RUN, "model_name_or_path": str(tmp_path / "lm"), "dataset_name": str(tmp_path / "prompts.jsonl"),
                  "output_dir": str(out), "reward_funcs": ["sampling_rewards:good_words"], "num_iterations": 1,
                  "num_generations": 4, "max_new_tokens": 6, "pair_rule": "all_pairs", "max_steps": 3,
                  "per_device_train_batch_size": 4 // processes, "max_length": 64, "learning_rate": 1e-2, "seed": 5}
        (tmp_path / f"n{processes}.yaml").write_text(yaml.safe_dump(config))
        launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
                  if processes == 2 else [sys.executable])
        done = subprocess.run(launch + ["-m", "trl_plugins", "train", "iterative-dpo", "--config",
                                        str(tmp_path / f"n{processes}.yaml"), "--resume_from_checkpoint", "true"],
                              env=_env(), capture_output=True, text=True, timeout=600, start_new_session=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outputs[processes] = out
    pairs = [read_jsonl(outputs[n] / "iteration_1" / "pairs.jsonl") for n in (1, 2)]
    assert pairs[0] == pairs[1] and len(pairs[0]) > 4
    summaries = [json.loads((outputs[n] / "iteration_1" / "summary.json").read_text()) for n in (1, 2)]
    assert [s["processes"] for s in summaries] == [1, 2]
    assert max(_relative([summaries[0]["train_loss"]], [summaries[1]["train_loss"]])) < 1e-4


def test_only_the_store_writes_sampling_files():
    """The one write rule of the sampling engine (main process writes, every process waits) lives in
    sampling/store.py: no other engine or trainer module writes a file itself."""
    import re

    writers = re.compile(r"write_jsonl\(|write_json\(|\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wa]|savefig\(|"
                         r"save_file\(")
    sources = [REPO / "trl_plugins" / "sampling" / name for name in ("engine.py", "records.py", "trainer.py", "method.py",
                                                                      "generation.py", "reward_sources.py",
                                                                      "selection.py")]
    sources += [REPO / "trl_plugins" / "sampling" / name for name in ("pairs.py", "preference.py",
                                                                       "preference_method.py")]
    sources += [REPO / "trl_plugins" / "trainers" / f"{name}.py" for name in ("raft", "rest", "rejection_sampling",
                                                                               "iterative_dpo", "iterative_orpo")]
    for path in sources:
        assert not writers.search(path.read_text()), f"{path.name} writes a file outside RunStore"


# -- launches and recipes ---------------------------------------------------------------------------------------------
CONFIGS = REPO / "recipes" / "accelerate_configs"


@pytest.mark.parametrize("name, launch", [("cpu", "single"), ("single_gpu", "single"), ("multi_cpu", "ddp"),
                                          ("multi_gpu", "ddp"), ("zero2", "zero2"), ("zero3", "zero3"),
                                          ("fsdp", "fsdp")])
def test_shipped_accelerate_configs_load_and_say_their_launch(name, launch):
    from accelerate.commands.config.config_args import load_config_from_file

    from trl_plugins.run.distributed import launch_from_config

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # accelerate's own strict loader
    assert config.num_processes == (1 if launch == "single" else 2)
    assert launch_from_config(CONFIGS / f"{name}.yaml") == launch


def _parsed(trainer: str, recipe: str, *argv: str):
    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import StrictParser, resolve_recipe

    spec = get_registry().trainer(trainer)
    (_, training_args, model_args, _), _ = StrictParser(spec.load()[1]).parse(list(argv), resolve_recipe(spec, recipe))
    return model_args, training_args


@pytest.mark.parametrize(
    "trainer, recipe, argv, launch, message",
    [
        ("orpo", "qwen2.5-1.5b-instruct/orpo/config_qlora", [], "ddp", None),
        ("orpo", "qwen2.5-1.5b-instruct/orpo/config_qlora", [], "zero2", None),
        ("orpo", "qwen2.5-1.5b-instruct/orpo/config_qlora", [], "fsdp", "bnb_4bit_quant_storage equal to the model dtype"),
        ("orpo", "qwen2.5-1.5b-instruct/orpo/config_qlora", ["--bnb_4bit_quant_storage", "bfloat16"], "fsdp", None),
        ("kto-weighted", "qwen2.5-1.5b-instruct/kto_weighted/config_qlora", [], "zero3", "bnb_4bit_quant_storage"),
        ("kto-weighted", "qwen2.5-1.5b-instruct/kto_weighted/config_qlora", ["--bnb_4bit_quant_storage", "bfloat16"],
         "zero3", None),
        ("margin-rm", "qwen2.5-1.5b-instruct/margin_rm/config_qlora", ["--load_in_4bit", "false", "--load_in_8bit",
                                                                        "true"], "fsdp", "8-bit weights cannot"),
        ("raft", "qwen2.5-1.5b-instruct/raft/config_qlora", ["--bnb_4bit_quant_storage", "bfloat16"], "fsdp",
         "launch with multi_gpu (DDP) or zero2"),
        ("raft", "qwen2.5-1.5b-instruct/raft/config_qlora", [], "ddp", None),
    ],
)
def test_launch_and_recipe_combinations(trainer, recipe, argv, launch, message, pretend_gpu, monkeypatch):
    """What docs/distributed.md promises: QLoRA under FSDP/ZeRO-3 needs the quantized weights stored as the model
    dtype; 8-bit weights do not shard; sampling trainers run under DDP or ZeRO-2 only."""
    import trl_plugins.run.distributed as distributed
    from trl_plugins.errors import ConfigError
    from trl_plugins.run.distributed import check_launch

    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: True)  # transformers' is_deepspeed_available
    model_args, training_args = _parsed(trainer, recipe, *argv)
    if message is None:
        check_launch(method_of(trainer), model_args, training_args, launch)
    else:
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            check_launch(method_of(trainer), model_args, training_args, launch)
        assert "\n" not in str(info.value)


def test_sharded_launch_without_deepspeed_or_with_bad_qlora_stops_before_the_model(run_cli, tiny_recipe,
                                                                                      no_model_loading, monkeypatch):
    """Under `accelerate launch` the processes read the launch from the environment and stop in one line."""
    import trl_plugins.run.distributed as distributed

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    code, _, err = run_cli("check-data", "orpo", "--config", tiny_recipe({"load_in_4bit": True, "dtype": "float32"}))
    assert code == 2 and err.count("error:") == 1 and "bnb_4bit_quant_storage" in err, err
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: False)  # transformers' is_deepspeed_available
    code, _, err = run_cli("check-data", "orpo", "--config", tiny_recipe())
    assert code == 2 and "pip install 'trl-plugins[deepspeed]'" in err, err


def test_any_generating_method_is_refused_under_sharding_whatever_its_name():
    """The rule asks the method (``generates``), so a third-party sampling method is refused like the built-ins."""
    from types import SimpleNamespace

    from trl_plugins.errors import ConfigError
    from trl_plugins.run.distributed import check_launch

    method = SimpleNamespace(generates=True, spec=SimpleNamespace(name="someone-elses-sampler"))
    with pytest.raises(ConfigError, match="someone-elses-sampler under FSDP"):
        check_launch(method, SimpleNamespace(), SimpleNamespace(), "fsdp")
    check_launch(SimpleNamespace(generates=False, spec=method.spec), SimpleNamespace(), SimpleNamespace(), "fsdp")
    assert method_of("raft").generates and not method_of("orpo").generates
