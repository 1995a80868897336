"""Pruning and quantization of small CNNs (EXPERIMENTS.md section 8, a reconstruction): global magnitude
pruning to a target sparsity with fine-tuning, post-training uniform weight quantization. The entry point
is the plain script pruning/train.py; prune.py, quantize.py and networks.py are what it is made of."""
