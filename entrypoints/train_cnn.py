"""Train a CNN on the 8x8 digits (channel `train` with digits.npz, else scikit-learn's copy).

python entrypoints/train_cnn.py --epochs 1            # writes under ./runs/train_cnn
(in SageMaker: python -- train_cnn.py --epochs 30 --lr 0.003 ...)
"""

from sm_toolkit.models.activations import ACTIVATIONS
from sm_toolkit.train import app
from sm_toolkit.train.families import build_cnn
from sm_toolkit.train.hparams import Parser, add_train_args, parse_params


def make_parser() -> Parser:
    p = Parser("train_cnn.py", __doc__)
    p.add("size", str, "default", "model/data size", choices=("default", "debug"))
    p.add("width", int, 32, "conv channels")
    p.add("depth", int, 2, "conv layers")
    p.add("kernel_size", int, 3, "conv kernel size (odd)")
    p.add("batch_norm", bool, True, "batch norm after each conv")
    p.add("residual", bool, False, "identity skip around conv blocks")
    p.add("dense", int, 128, "dense layer width")
    p.add("dropout", float, 0.25, "dropout after pooling and after the dense layer")
    p.add("activation", str, "relu", "activation", choices=ACTIVATIONS)
    p.add("activation_params", parse_params, {}, "e.g. alpha=0.1 or k=3")
    p.add("activation_checkpointing", bool, False, "recompute conv activations in backward")
    defaults = dict(epochs=20, batch_size=64, lr=3e-3, warmup_steps=20, weight_decay=1e-4)
    add_train_args(p, defaults=defaults)
    return p


if __name__ == "__main__":
    raise SystemExit(app.main("train_cnn.py", make_parser(), build_cnn))
