"""Makes musicnn_golden.npz with the ORIGINAL musicnn (TensorFlow), for tests/evaluation.

Run it in a separate environment that has TensorFlow (it cannot share one with our JAX):
  python -m venv tfenv && tfenv/bin/pip install tensorflow-cpu==2.16.2 tf-keras==2.16.0 librosa
  tfenv/bin/pip install --no-deps musicnn==0.1.0
  TF_USE_LEGACY_KERAS=1 tfenv/bin/python tests/golden/musicnn/make_golden.py

The input is 6.5 s of a deterministic synthetic chord with noise at 16 kHz (no licence issue);
it stores the waveform, musicnn's own spectrogram patches (librosa front end) and the original
network's penultimate layer and tag probabilities on those patches.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import tensorflow as tf  # noqa: E402

from musicnn import configuration  # noqa: E402
from musicnn import extractor  # noqa: E402
from musicnn import models  # noqa: E402

RATE, SECONDS = 16000, 6.5
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "musicnn_golden.npz")


def waveform() -> np.ndarray:
  rng = np.random.default_rng(7)
  t = np.arange(int(RATE * SECONDS)) / RATE
  notes = sum(np.sin(2 * np.pi * f * t) * np.exp(-((t % 0.5) * 4)) for f in (220, 277.2, 329.6))
  clip = notes + 0.05 * rng.standard_normal(len(t))
  return np.round(0.5 * clip / np.max(np.abs(clip)) * 32767).astype(np.int16)


def main() -> None:
  audio = waveform()
  path = "/tmp/musicnn_golden_input.wav"
  sf.write(path, audio, RATE, subtype="PCM_16")
  n_frames = librosa.time_to_frames(3, sr=RATE, n_fft=configuration.FFT_SIZE,
                                    hop_length=configuration.FFT_HOP) + 1
  batch, _ = extractor.batch_data(path, n_frames, n_frames)
  tf.compat.v1.reset_default_graph()
  with tf.name_scope("model"):
    x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, configuration.N_MELS])
    is_training = tf.compat.v1.placeholder(tf.bool)
    outputs = models.define_model(x, is_training, "MTT_musicnn", 50)
    probabilities = tf.nn.sigmoid(outputs[0])
  with tf.compat.v1.Session() as session:
    tf.compat.v1.train.Saver().restore(
        session, os.path.join(os.path.dirname(extractor.__file__), "MTT_musicnn", ""))
    tags, penultimate = session.run([probabilities, outputs[-1]],
                                    {x: batch.astype(np.float32), is_training: False})
  np.savez_compressed(OUT, waveform=audio, patches=batch.astype(np.float32),
                      penultimate=penultimate, tags=tags, librosa=librosa.__version__,
                      tensorflow=tf.__version__)
  print(f"wrote {OUT}: patches {batch.shape}, penultimate {penultimate.shape}, tags {tags.shape}")


if __name__ == "__main__":
  main()
