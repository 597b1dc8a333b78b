"""Everything up to a trained model: reading exports, sessions, ChatML, datasets, fine-tuning, evaluation."""
