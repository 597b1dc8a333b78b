"""The offline half of doppel: everything that turns a Telegram export into a GGUF model, and needs torch.

One subpackage per stage, in pipeline order:

- ``training.telegram``: reading Telegram Desktop exports (``stream``, ``messages``), and ``sample``, a
  synthetic export to try everything on (``doppel sample-export``);
- ``training.prepare``: ``doppel prepare``, exports to a ChatML dataset;
- ``training.train``: ``doppel train``, LoRA or full fine-tuning on that dataset;
- ``training.export``: ``doppel export``, a run merged, converted with llama.cpp's converter, verified and
  quantized into a GGUF.

It imports ``doppel`` (the shared contracts), never ``serving`` or ``bot``. Installed with ``doppel[train]``.
"""
