"""Hyperparameters from the command line, the way sagemaker-training passes them.

The launcher runs `python -- train_cnn.py --epochs 5 --use_bn True ...`: every value is a
string, booleans are Python's `True`/`False`, dicts are `k=v,k2=v2`. Names use underscores;
the dashed spelling is accepted too. Any bad value becomes a ConfigError naming the
hyperparameter and what is allowed (one line, exit code 2), never an argparse traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from dataclasses import fields

from sm_toolkit.errors import ConfigError
from sm_toolkit.models import cpu_matmul
from sm_toolkit.train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from sm_toolkit.train.smp_params import parse_mp_parameters


def str2bool(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError("True or False")


def parse_params(value: str) -> dict[str, object]:
    """'alpha=0.1,k=3' -> {'alpha': 0.1, 'k': 3} (the SageMaker encoding of a dict)."""
    out: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in str(value).split(","))):
        if "=" not in item:
            raise argparse.ArgumentTypeError("expected key=value pairs separated by commas")
        key, raw = (s.strip() for s in item.split("=", 1))
        for cast in (int, float, str2bool):
            try:
                out[key] = cast(raw)
                break
            except (ValueError, argparse.ArgumentTypeError):
                continue
        else:
            out[key] = raw
    return out


class Parser(argparse.ArgumentParser):
    """ArgumentParser that raises ConfigError instead of printing usage and exiting."""

    def __init__(self, prog: str, description: str) -> None:
        super().__init__(prog=prog, description=description, exit_on_error=False)

    def add(self, name: str, type_: object, default: object, help_: str, **kw: object) -> None:
        names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        if type_ is bool:
            type_ = str2bool
        self.add_argument(*names, dest=name, type=type_, default=default, help=help_, **kw)

    def error(self, message: str) -> None:  # called by argparse for usage errors
        raise ConfigError("hyperparameters", message, "see --help for the accepted names")

    def parse(self, argv: Sequence[str] | None) -> argparse.Namespace:
        argv = list(sys.argv[1:] if argv is None else argv)
        try:
            ns, unknown = self.parse_known_args(argv)
        except argparse.ArgumentError as err:
            raise self._config_error(err, argv) from None
        if unknown:
            names = sorted(a.dest for a in self._actions if a.dest != "help")
            # The line is bounded (300 characters): the nearest names first, then the rest.
            near = difflib.get_close_matches(unknown[0].lstrip("-"), names, n=3, cutoff=0.4)
            rest = [n for n in names if n not in near]
            hint = f"did you mean {' or '.join(near)}? " if near else ""
            raise ConfigError(
                "hyperparameter", unknown[0], f"{hint}known: {', '.join(near + rest)}"
            )
        return ns

    def _config_error(self, err: argparse.ArgumentError, argv: list[str]) -> ConfigError:
        action = next(
            (a for a in self._actions if err.argument_name in ("/".join(a.option_strings),)),
            None,
        )
        if action is None:
            return ConfigError("hyperparameters", str(err.message), "see --help")
        value = next(
            (argv[i + 1] for i, a in enumerate(argv[:-1]) if a in action.option_strings), None
        )
        if action.choices:
            allowed = f"one of {', '.join(map(str, action.choices))}"
        elif action.type in (int, float):
            allowed = f"a value of type {action.type.__name__}"
        else:  # our own converters say what they expected
            allowed = str(err.message)
        return ConfigError(action.dest, value, allowed)


def add_train_args(p: Parser, *, defaults: dict[str, object]) -> None:
    """The TrainConfig hyperparameters; `defaults` overrides TrainConfig's per entrypoint."""
    base = {f.name: f.default for f in fields(TrainConfig)} | defaults
    p.add("epochs", int, base["epochs"], "passes over the training data")
    p.add("batch_size", int, base["batch_size"], "global batch size (all processes together)")
    p.add("lr", float, base["lr"], "peak learning rate")
    p.add("optimizer", str, base["optimizer"], "optimizer", choices=OPTIMIZERS)
    p.add("momentum", float, base["momentum"], "momentum (sgd, rmsprop)")
    p.add("weight_decay", float, base["weight_decay"], "torch weight_decay (decoupled in adamw)")
    p.add("l1", float, base["l1"], "L1 penalty on weight matrices added to the loss")
    p.add("l2", float, base["l2"], "L2 penalty on weight matrices added to the loss")
    p.add("schedule", str, base["schedule"], "lr schedule after warmup", choices=SCHEDULES)
    p.add("warmup_steps", int, base["warmup_steps"], "linear warmup steps")
    p.add("min_lr_ratio", float, base["min_lr_ratio"], "cosine floor as a fraction of lr")
    p.add("grad_clip", float, base["grad_clip"], "max global gradient norm (0 = off)")
    p.add("early_stopping_patience", int, base["early_stopping_patience"], "0 = off")
    p.add("early_stopping_metric", str, base["early_stopping_metric"], "e.g. val:loss")
    p.add(
        "early_stopping_mode", str, base["early_stopping_mode"], "min|max", choices=("min", "max")
    )
    p.add("early_stopping_min_delta", float, base["early_stopping_min_delta"], "min improvement")
    p.add("bf16", bool, base["bf16"], "bfloat16 autocast")
    p.add("compile", bool, base["compile"], "torch.compile the model")
    p.add("seed", int, base["seed"], "seed for init, data order and dropout")
    p.add("checkpoint_every", int, base["checkpoint_every"], "steps between checkpoints (0: end)")
    p.add("log_every", int, base["log_every"], "steps between progress lines")
    p.add("max_steps", int, base["max_steps"], "stop after this many steps (0 = all epochs)")
    p.add("threads", int, 0, "torch intra-op threads (0: torch default, shared out under DDP)")
    p.add(
        "cpu_matmul", str, "auto", "fp32 CPU matmul engine (models/cpu_matmul.py)",
        choices=cpu_matmul.ENGINES,
    )  # fmt: skip
    p.add(
        "keep_freed_memory", bool, True,
        "CPU: malloc keeps what a step frees for the next (no page faults; runtime/allocator.py)",
    )  # fmt: skip
    add_parallel_args(p)


def add_parallel_args(p: Parser) -> None:
    """SageMaker model parallelism v2's parameter names, with the same meaning (train/parallel)."""
    p.add(
        "hybrid_shard_degree",
        int,
        0,
        "FSDP2 shard group size (0: DDP, or full sharding with experts; n: HSDP groups of n)",
    )
    p.add("expert_parallel_degree", int, 1, "ranks the routed experts are split over")
    p.add("tensor_parallel_degree", int, 1, "only 1 (tensor parallelism is not implemented)")
    p.add("sm_activation_offloading", bool, False, "keep saved activations in CPU memory")
    p.add(
        "activation_loading_horizon",
        int,
        2,
        "SMP v2's prefetch horizon; validated (>= 1), torch's save_on_cpu loads on demand",
    )
    p.add(
        "mp_parameters",
        parse_mp_parameters,
        None,
        "SMP v2's parameters as the SDK passes them (JSON or k=v,...), each onto the same name",
    )


def train_config(ns: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(ns).items() if k in names})
