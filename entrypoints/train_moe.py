"""Train a decoder-only Mixture-of-Experts transformer, character level, on the pydoc text.

python entrypoints/train_moe.py --epochs 1 --size debug      # writes under ./runs/train_moe
python entrypoints/train_moe.py --n_experts 8 --top_k 2 --capacity_factor 1.25
"""

from sm_toolkit.models.activations import ACTIVATIONS
from sm_toolkit.models.moe_experts import EXPERT_COMPUTES, EXPERT_KINDS
from sm_toolkit.train import app
from sm_toolkit.train.families import build_moe
from sm_toolkit.train.hparams import Parser, add_train_args


def make_parser() -> Parser:
    """Model options default to None: MoEConfig's own defaults (or its debug size) apply."""
    p = Parser("train_moe.py", __doc__)
    p.add("size", str, "default", "model/data size", choices=("default", "debug"))
    p.add("corpus_chars", int, 0, "use only the first N characters of the corpus (0: all)")
    for name in ("block_size", "n_layer", "n_head", "d_model", "d_ff", "n_experts", "top_k",
                 "moe_every"):  # fmt: skip
        p.add(name, int, None, f"MoEConfig.{name}")
    for name in ("capacity_factor", "eval_capacity_factor", "aux_loss_weight", "z_loss_weight",
                 "dropout"):  # fmt: skip
        p.add(name, float, None, f"MoEConfig.{name}")
    p.add("dropless", bool, None, "no capacity limit: no token is dropped")
    p.add("activation", str, None, "expert activation (mlp experts)", choices=ACTIVATIONS)
    p.add("expert_kind", str, None, "mlp or swiglu (gated) experts", choices=EXPERT_KINDS)
    p.add("expert_compute", str, None, "per-expert loop, grouped_mm, or auto (timed)",
          choices=EXPERT_COMPUTES)  # fmt: skip
    p.add("activation_checkpointing", bool, None, "recompute block activations in backward")
    defaults = dict(epochs=2, batch_size=32, lr=1e-3, warmup_steps=30, grad_clip=1.0)
    add_train_args(p, defaults=defaults)
    return p


if __name__ == "__main__":
    raise SystemExit(app.main("train_moe.py", make_parser(), build_moe))
