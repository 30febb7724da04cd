"""Train a vanilla RNN / LSTM / GRU: a character language model on the pydoc topics text
(truncated BPTT) or a digits classifier that reads images row by row.

    python entrypoints/train_rnn.py --epochs 1 --size debug      # writes under ./runs/train_rnn
    python entrypoints/train_rnn.py --task classify --cell gru --bidirectional True
"""

from sm_toolkit.train import app
from sm_toolkit.train.families import build_rnn
from sm_toolkit.train.hparams import Parser, add_train_args


def make_parser() -> Parser:
    p = Parser("train_rnn.py", __doc__)
    p.add("size", str, "default", "model/data size", choices=("default", "debug"))
    p.add("task", str, "lm", "lm: character language model; classify: digits by rows",
          choices=("lm", "classify"))  # fmt: skip
    p.add("cell", str, "lstm", "recurrent cell", choices=("rnn", "lstm", "gru"))
    p.add("embed", int, 64, "character embedding size (lm)")
    p.add("hidden", int, 256, "hidden units per layer")
    p.add("layers", int, 2, "stacked layers")
    p.add("bidirectional", bool, False, "bidirectional (classify only)")
    p.add("dropout", float, 0.1, "dropout on embeddings, between layers and before the head")
    p.add("nonlinearity", str, "tanh", "vanilla RNN nonlinearity", choices=("tanh", "relu"))
    p.add("bptt", int, 64, "truncated-BPTT window (characters)")
    p.add("corpus_chars", int, 0, "use only the first N characters of the corpus (0: all)")
    p.add("activation_checkpointing", bool, False, "recompute RNN activations in backward")
    defaults = dict(epochs=3, batch_size=32, lr=3e-3, warmup_steps=20, grad_clip=1.0)
    add_train_args(p, defaults=defaults)
    return p


if __name__ == "__main__":
    raise SystemExit(app.main("train_rnn.py", make_parser(), build_rnn))
