"""SageMaker model parallelism v2's parameters, as the SDKs hand them to the script.

A job with SMP v2 carries its parameters in one hyperparameter, ``mp_parameters``: SDK v2
JSON-encodes the distribution's ``parameters`` dict into it (``get_mp_parameters``), SDK v3
puts ``SMP(...)``'s fields there (``SMP._to_mp_hyperparameters``). The script receives it
as ``--mp_parameters VALUE``, in one of two spellings:

- sagemaker-training (SDK v2 script mode) decodes the JSON and passes a dict as
  ``k=v,k2=v2`` with Python's ``True``/``False`` (``mapping.to_cmd_args``);
- SDK v3's torchrun driver passes the JSON text itself (``hyperparameters_to_cli_args``).

``apply_mp_parameters`` maps each parameter one to one onto the entrypoint's own
hyperparameter of the same name (``hparams.add_parallel_args``), so sm-toolkit's FSDP2 /
expert parallelism runs with SMP's degrees, on AWS and locally alike.
"""

from __future__ import annotations

import argparse
import json

from sm_toolkit.errors import ConfigError

# SMP v2's parameters that sm-toolkit implements: name -> (type, the entrypoint's default).
MAPPED: dict[str, tuple[type, object]] = {
    "hybrid_shard_degree": (int, 0),
    "expert_parallel_degree": (int, 1),
    "tensor_parallel_degree": (int, 1),
    "sm_activation_offloading": (bool, False),
    "activation_loading_horizon": (int, 2),
}
# SMP v2 parameters that tune SMP's own implementation; nothing here to map them onto.
IGNORED = ("fsdp_cache_flush_warnings", "allow_empty_shards", "random_seed")
# Accepted at SMP's default only: sm-toolkit has no context parallelism.
DEFAULT_ONLY = {"context_parallel_degree": 1}


def parse_mp_parameters(text: str) -> dict[str, object]:
    """``--mp_parameters`` in either spelling -> {name: value}."""
    text = str(text).strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise argparse.ArgumentTypeError("a JSON object of SMP v2 parameters") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("a JSON object of SMP v2 parameters")
        return value
    from sm_toolkit.train.hparams import parse_params

    try:
        return parse_params(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            "SMP v2 parameters as a JSON object or k=v,k2=v2 pairs"
        ) from None


def apply_mp_parameters(ns: argparse.Namespace) -> None:
    """Set the entrypoint's degrees from ``ns.mp_parameters`` (one ConfigError line for an
    unknown name, a wrong type, or a value that contradicts the same hyperparameter)."""
    params = getattr(ns, "mp_parameters", None) or {}
    for name, value in params.items():
        field = f"mp_parameters.{name}"
        if name in IGNORED:
            continue
        if name in DEFAULT_ONLY:
            if value != DEFAULT_ONLY[name]:
                raise ConfigError(
                    field, value, f"{DEFAULT_ONLY[name]} (not implemented in sm-toolkit)"
                )
            continue
        if name not in MAPPED:
            known = ", ".join([*MAPPED, *DEFAULT_ONLY, *IGNORED])
            raise ConfigError(field, name, f"one of SMP v2's parameters: {known}")
        kind, default = MAPPED[name]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(field, value, "an integer")
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(field, value, "true or false")
        current = getattr(ns, name)
        if current != default and current != value:  # given twice, differently
            raise ConfigError(
                field, value, f"the same value as --{name} ({current}), or only one of them"
            )
        setattr(ns, name, value)
