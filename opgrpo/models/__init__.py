"""Loading and running causal LMs: device/dtype resolution (devices), policy and tokenizer loading and
batched sampling (generation), left-padded batches (batching), sequence log-probabilities (logprobs)."""
