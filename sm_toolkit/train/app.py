"""The shell around the trainer, shared by the three entrypoints.

main(): parse hyperparameters, read /opt/ml + SM_* once, init the process group, seed,
build the family's task, train, then (rank 0) write the model, plots, rule verdicts and
metrics.json. All errors go through runtime.failure.run_main (failure file, exit code).
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sm_toolkit.errors import ConfigError
from sm_toolkit.models import cpu_matmul
from sm_toolkit.runtime import allocator, distributed
from sm_toolkit.runtime.env import RuntimeEnv, read_env
from sm_toolkit.runtime.failure import run_main
from sm_toolkit.runtime.signals import StopFlag
from sm_toolkit.train import plots, tracking
from sm_toolkit.train.families import Built
from sm_toolkit.train.hparams import Parser, train_config
from sm_toolkit.train.metrics import metrics_line, write_report
from sm_toolkit.train.parallel import ParallelDims
from sm_toolkit.train.rules import Observations, evaluate_rules, normalise_rule_names
from sm_toolkit.train.smp_params import apply_mp_parameters
from sm_toolkit.train.trainer import FitResult, Trainer

Builder = Callable[[Any, RuntimeEnv, distributed.DistInfo], Built]
ACTIVATION_RULES = {"dead_relu", "saturated_activation"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int, dist: distributed.DistInfo) -> None:
    """Intra-op threads: the given number, or the CPUs shared out among local processes
    (several processes each using every core slow each other down many times over)."""
    if threads > 0:
        torch.set_num_threads(threads)
    elif dist.enabled:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))


def _cpu_note(device: torch.device, kept: bool) -> str:
    if device.type != "cpu":
        return ""
    malloc = "; malloc keeps freed memory" if kept else ""
    return f" (fp32 matmuls: {cpu_matmul.engine()}{malloc})"


def pick_device(env: RuntimeEnv, dist: distributed.DistInfo) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def save_model(model_dir: Path, built: Built, model: torch.nn.Module, config: dict) -> None:
    """model.pt (state_dict) + model_config.json (enough to rebuild the model)."""
    torch.save(model.state_dict(), model_dir / "model.pt")
    meta = {
        "family": built.family,
        "model_config": built.model_config,
        "train_config": config,
        **built.extra,
    }
    (model_dir / "model_config.json").write_text(json.dumps(meta, indent=2) + "\n")


def finalize(
    name: str,
    env: RuntimeEnv,
    built: Built,
    trainer: Trainer,
    result: FitResult,
    rules: Sequence[str],
    model: torch.nn.Module,
) -> dict[str, Any]:
    """Rank 0 after training: final evaluation, plots, rules, report, `model` (unsharded)."""
    state, out = result.state, env.output_data_dir
    final = built.task.final_report(model, out)
    if final.get("metrics"):
        print(metrics_line(final["metrics"], epoch=state.epoch, step=state.step), flush=True)
    base = final.get("unigram_baseline")
    if base and state.epochs:
        model_ppl = state.epochs[-1].get("val:perplexity", float("nan"))
        print(
            f"[baseline] validation perplexity: model {model_ppl:.3f}"
            f" vs unigram {base['perplexity']:.3f}"
        )
    plots.loss_curves(state.step_losses, state.epochs, out / "loss_curves.png")
    plots.gradient_flow_plot(trainer.grads.mean_abs, out / "gradient_flow.png")
    obs = Observations(
        step_losses=state.step_losses,
        epoch_train_loss=[e["train:loss"] for e in state.epochs],
        epoch_val_loss=[e.get("val:loss", float("nan")) for e in state.epochs],
        grads=trainer.grads, activations=trainer.acts, non_finite_steps=state.non_finite_steps,
    )  # fmt: skip
    verdicts = evaluate_rules(rules, obs)
    for verdict in verdicts:
        print(verdict.line())
    save_model(env.model_dir, built, model, trainer.config.to_dict())
    report = {
        "entrypoint": name,
        "family": built.family,
        "world_size": trainer.dist.world_size,
        "parallelism": trainer.dims.describe(),
        "steps": state.step,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "seconds": round(result.seconds, 3),
        "train_config": trainer.config.to_dict(),
        "model_config": built.model_config,
        "history": state.epochs,
        "final": {**(state.epochs[-1] if state.epochs else {}), **final.pop("metrics", {})},
        "rules": [v.to_dict() for v in verdicts],
        **final,
    }
    write_report(out / "metrics.json", report)
    return report


def parallel_dims(ns: Any, dist: distributed.DistInfo, built: Built) -> ParallelDims:
    """The job's parallelism degrees from its hyperparameters, checked against the model."""
    config = built.model_config
    moe = built.family == "moe" and config.get("moe_every", 0) > 0
    dims = ParallelDims(
        world_size=dist.world_size,
        hybrid_shard_degree=ns.hybrid_shard_degree,
        expert_parallel_degree=ns.expert_parallel_degree,
        tensor_parallel_degree=ns.tensor_parallel_degree,
        n_experts=config.get("n_experts", 0) if moe else 0,
    )
    for name in ("l1", "l2"):  # a penalty over shards would be scaled wrongly: refuse it
        if dims.enabled and not dims.use_ddp and getattr(ns, name, 0):
            raise ConfigError(
                name, getattr(ns, name),
                "0 under FSDP2 / expert parallelism (weight_decay works per shard)",
            )  # fmt: skip
    return dims


def _open_tracking(
    environ, trainer: Trainer, built: Built, device, kept: bool
) -> tracking.RunLog | None:
    """Rank 0's MLflow run (when the job names a tracking URI), with what only it knows."""
    run = tracking.open_run(environ, trainer.dist.is_main)
    if run is not None:
        facts = {
            "model_family": built.family,
            "model_parameters": sum(p.numel() for p in trainer.model.parameters()),
            "world_size": trainer.dist.world_size,
            "parallelism": trainer.dims.describe(),
            "device": device,
            "torch_version": torch.__version__,
        }
        if device.type == "cpu":
            facts["cpu_matmul"] = cpu_matmul.engine()
            facts["malloc_keeps_freed_memory"] = kept
        tracking.safely(run.facts, facts)
    return run


def _job(name: str, parser: Parser, build: Builder, argv, environ, holder: dict) -> None:
    ns = parser.parse(argv)
    apply_mp_parameters(ns)  # SMP v2's degrees, as SageMaker passes them, onto ours
    env = read_env(environ, local_dir=Path("runs") / Path(name).stem)
    holder["env"] = env
    rules = normalise_rule_names(env.rules)
    config = train_config(ns)
    env.prepare()
    dist = distributed.detect(environ)
    set_threads(ns.threads, dist)
    cpu_matmul.set_engine(ns.cpu_matmul)
    device = pick_device(env, dist)
    kept = device.type == "cpu" and ns.keep_freed_memory and allocator.keep_freed_memory()
    distributed.init_process_group(dist, device, environ)
    seed_everything(config.seed)
    built = build(ns, env, dist)
    dims = parallel_dims(ns, dist, built)
    stop = StopFlag().install()
    trainer = Trainer(
        config, built.task, dist=dist, device=device, checkpoint_dir=env.checkpoint_dir,
        tensorboard_dir=env.tensorboard_dir, watch_activations=bool(ACTIVATION_RULES & set(rules)),
        parallel=dims, model_config=json.loads(json.dumps(built.model_config)), stop=stop,
    )  # fmt: skip
    if dist.is_main:
        n_params = sum(p.numel() for p in trainer.model.parameters())
        print(
            f"[job] {name}: {built.family} model with {n_params:,} parameters; "
            f"{trainer.steps_per_epoch} steps/epoch x {config.epochs} epochs; world size "
            f"{dist.world_size} ({dims.describe()}); device {device}{_cpu_note(device, kept)}; "
            f"output {env.output_data_dir}; checkpoints {env.checkpoint_dir or 'off'}",
            flush=True,
        )
        for note in built.notes:
            print(note)
    run = _open_tracking(environ, trainer, built, device, kept)
    result = trainer.fit()
    stop.uninstall()
    model = trainer.gathered_model() if result.interrupted is None else None  # all ranks
    if result.interrupted is None and dist.is_main:
        finalize(name, env, built, trainer, result, rules, model)
        if run is not None:
            paths = (env.base_dir, env.model_dir, env.output_data_dir)
            tracking.safely(run.finish, result.state.epochs, *paths)
    elif result.interrupted and dist.is_main:
        print(f"[job] stopped early ({result.interrupted}); resume by running the job again")
    distributed.barrier(dist)
    distributed.shutdown(dist)


def main(
    name: str,
    parser: Parser,
    build: Builder,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one training job; returns the process exit code."""
    environ = os.environ if environ is None else environ
    holder: dict[str, RuntimeEnv] = {}
    t0 = time.perf_counter()

    def failure_file() -> Path:
        env = holder.get("env") or read_env(environ, local_dir=Path("runs") / Path(name).stem)
        return env.failure_file

    info = distributed.detect(environ)
    if info.enabled:
        _whole_line_writes()

    code = run_main(lambda: _job(name, parser, build, argv, environ, holder), failure_file)
    if code == 0 and info.is_main:
        print(f"[job] {name} finished in {time.perf_counter() - t0:.1f}s")
    sys.stdout.flush()
    sys.stderr.flush()
    if info.enabled:
        # A worker leaves now, done or failed: freeing the process group's objects (device
        # meshes, gloo pairs) at interpreter exit can block for ever or abort on a peer that
        # has already exited (seen as a rare hang of rank 1 under load), and a failed
        # worker's exit code (2 for a bad input) must be what torchrun/mpirun report.
        os._exit(code)
    return code


def _whole_line_writes() -> None:
    """Ranks share one stdout (a pipe, a log stream): each line leaves in one write, so no
    rank's line is cut into by another's (PYTHONUNBUFFERED writes text and newline apart)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True, write_through=False)
