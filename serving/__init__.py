"""From a trained run to answers: GGUF export, the inference engine, prompts and the terminal chat."""
