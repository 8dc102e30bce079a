"""musicnn in JAX: checkpoint read without TensorFlow, the same numbers as the original (golden
outputs of musicnn 0.1.0 on TensorFlow 2.16, made by tests/golden/musicnn/make_golden.py), and
tags that make sense on real music."""

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from aomni_jax.evaluation import labels
from aomni_jax.evaluation import musicnn
from aomni_jax.evaluation import tf_checkpoint
from tests.evaluation.conftest import load_mono


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  weights = musicnn.convert(tmp_path_factory.mktemp("musicnn") / "MTT_musicnn.npz")
  return musicnn.Musicnn(weights)


def test_conversion_keeps_the_inference_weights_only(tmp_path):
  path = musicnn.convert(tmp_path / "w.npz")
  weights = np.load(path)
  assert weights["conv2d/kernel"].shape == (7, 38, 1, 204)  # 7×38 timbral filters, 1.6×128 of them
  assert weights["dense/kernel"].shape == (1506, 200)
  assert weights["dense_1/kernel"].shape == (200, 50)
  assert len(weights.files) == 8 * 2 + 11 * 4 + 2 * 2  # 8 conv k/b, 11 BN γβμσ², 2 dense k/b
  with pytest.raises(tf_checkpoint.CheckpointError, match="not a TensorFlow"):
    (tmp_path / "x.index").write_bytes(b"\0" * 64)
    tf_checkpoint.read_checkpoint(tmp_path / "x")


GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "musicnn" / "musicnn_golden.npz"


def test_port_matches_the_original_network_and_front_end(model):
  golden = np.load(GOLDEN)
  penultimate, logits = musicnn.forward(model._params, jnp.asarray(golden["patches"]))
  # Same float32 network, different convolution order: agreement to ~1e-6 of values up to ~4.
  np.testing.assert_allclose(penultimate, golden["penultimate"], atol=5e-5)
  np.testing.assert_allclose(scipy.special.expit(logits), golden["tags"], atol=5e-6)
  # librosa's mel differs from ours by float rounding, magnified by the float16 cast musicnn does.
  ours = musicnn.log_mel_patches(golden["waveform"] / 32768.0)
  np.testing.assert_allclose(ours, golden["patches"], atol=2e-3)


# Real recordings (GCompris) and the tag musicnn must rank in its top 3.
EXPECTED_TAG = {"piano": "piano", "cello": "cello", "japan music": "drums",
                "beethoven music": "classical"}


def test_tags_of_real_music_name_the_instrument_or_genre(model, real_clips):
  clips = {c.label: c for c in real_clips if c.label in EXPECTED_TAG}
  outputs = model([load_mono(clips[label], 16000)[:6 * 16000] for label in EXPECTED_TAG])
  for (label, tag), output in zip(EXPECTED_TAG.items(), outputs):
    top3 = [musicnn.MTT_TAGS[i] for i in np.argsort(-output.class_probabilities())[:3]]
    assert tag in top3, (label, top3)
    assert output.embeddings.shape == (2, 200) and np.all(np.isfinite(output.embeddings))
  assert labels.classes_for_label("solo piano", musicnn.MTT_TAGS) == [musicnn.MTT_TAGS.index(
      "piano"), musicnn.MTT_TAGS.index("solo")]


def test_short_clips_are_repeat_padded_to_one_patch():
  patches = musicnn.log_mel_patches(np.sin(np.arange(8000) * 0.1))
  assert patches.shape == (1, musicnn.PATCH_FRAMES, musicnn.MELS)


def test_t2m_is_scored_with_yamnet_and_musicnn(model, yamnet_model, real_clips):
  from aomni_jax.evaluation import evaluate
  instruments = [c for c in real_clips if c.label in ("piano", "violin", "flute", "cello")]
  samples = []
  for clip in instruments:
    audio = load_mono(clip, 16000)
    samples.append(evaluate.Sample(id=clip.label, task="t2m", audio=audio[:3 * 16000],
                                   rate=16000, reference=audio[-3 * 16000:],
                                   labels=(clip.label,)))
  metrics = evaluate.Evaluator(evaluate.EvalConfig(item_resamples=50, set_resamples=2),
                               sound_backbone=yamnet_model, music_backbone=model).evaluate(samples)
  by_backbone = {}
  for metric in metrics:
    by_backbone.setdefault(metric.backbone, set()).add(metric.name)
  assert by_backbone[model.name] == by_backbone[yamnet_model.name] == {
      "fad", "kid", "label_score", "top5_hit", "kl"}
  music_hits = next(m for m in metrics if m.backbone == model.name and m.name == "top5_hit")
  assert music_hits.n == len(instruments) and music_hits.value >= 0.75


def test_cli_uses_musicnn_when_its_wheel_is_there(tmp_path, monkeypatch):
  from aomni_jax.evaluation import evaluate
  assert isinstance(evaluate.music_backbone_or_none(str(tmp_path / "w.npz")), musicnn.Musicnn)
  monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
  assert evaluate.music_backbone_or_none(str(tmp_path / "absent.npz")) is None
