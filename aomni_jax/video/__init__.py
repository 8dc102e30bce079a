"""Video in and out: PyAV decoding and time resampling (decode.py), the official frame transforms
(frames.py), the model-facing inputs of a clip (inputs.py) and muxing generated audio (mux.py)."""
