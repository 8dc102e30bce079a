"""The product side: a converted model directory → audio for every task and any duration.

  model_dir  the converted model directory (config, manifest, one Orbax checkpoint per component)
  pipeline   requests and input preparation, heads + sampler + VAE on given Qwen features
  thinker    prompts → fixed-length token batches for the on-device Qwen thinker
  engine     AudioOmni: load, batches with fixed shapes over a mesh, long-form windows
  longform   window plans, inpainting context, the crossfade join
  items      a manifest line / the CLI flags → a checked Request (one-line reasons)
  outputs    wav, spectrogram png and JSON sidecar of one item
  batch      the resumable manifest runner (one share per host)
"""
