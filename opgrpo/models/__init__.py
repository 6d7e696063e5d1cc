"""Loading and running causal LMs: device/dtype resolution (devices), policy and tokenizer loading and
batched sampling (generation), left-padded batches (batching), sequence log-probabilities (logprobs); and a
run's models on the Hugging Face Hub: the push (hub), the model card (model_card), the prefetch into the cache
(prefetch), hub ids told from local paths (hub_ids)."""
