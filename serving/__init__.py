"""The runtime: answering as a persona from a GGUF through llama.cpp, without torch.

Planned, one subpackage each (empty until their issues land):

- ``serving.engine``: the reply engine (llama.cpp in-process, or an OpenAI-compatible server), prompt building
  with rolling per-chat context, and memory retrieval over a prepared dataset;
- ``serving.chat``: ``doppel chat``, the terminal chat;
- ``serving.eval``: ``doppel eval``, how well a model imitates its owner.

It imports ``doppel`` only: never ``training`` (torch, offline work) nor ``bot``. A GGUF carries what it needs in
its ``doppel.*`` metadata (:mod:`doppel.formats.gguf_metadata`) and opens through :mod:`doppel.llama_loader`.
"""
