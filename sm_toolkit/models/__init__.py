"""Model families: CNN (`cnn`), RNN/LSTM/GRU (`rnn`), Mixture-of-Experts transformer (`moe`).

Shared building blocks live in `activations`. Submodules are imported on demand so that
importing one family does not pull in the others.
"""
