"""Prompt templates: byte-exact against the prompts recorded in the pipeline fixture."""

import json

import pytest

from aomni_jax.text import prompts


def test_fixture_prompts(golden_dir):
  manifest = json.loads((golden_dir / "pipeline" / "manifest.json").read_text("utf-8"))
  seen = 0
  for case in manifest["cases"].values():
    for item in case["items"]:
      text = item["text_prompt"]
      if item["task"] == "Add":
        built = prompts.build_prompt("Add", desc="church bells")
        assert prompts.edit_instruction("Add", desc="church bells") == text
      else:
        built = prompts.build_prompt(item["task"], text)
      assert built == item["qwen_prompt"]
      seen += 1
  assert seen == 5


def test_t2a_appends_a_period_and_tts_hides_the_transcript():
  assert "user\nA clock ticking..<|im_end|>" in prompts.build_prompt("T2A", "A clock ticking.")
  assert "user\n<|im_end|>" in prompts.build_prompt("TTS", "secret words")


def test_edit_templates():
  style = prompts.build_prompt("Style Transfer", source="rain", target="applause")
  assert "Change the sound of 'rain' to 'applause'." in style
  assert "Remove the sound of 'dog' from the input audio." in prompts.build_prompt("Remove", "dog")
  assert prompts.SYSTEM_PROMPTS["EDIT"] in prompts.build_prompt("Extract", "dog")


def test_unknown_task():
  with pytest.raises(ValueError, match="unknown task 'T2X'"):
    prompts.build_prompt("T2X", "x")


def test_audio_placeholder_goes_before_the_assistant_turn():
  out = prompts.with_audio_placeholder(prompts.build_prompt("T2M", "jazz"))
  assert out.endswith("jazz.<|audio_bos|><|AUDIO|><|audio_eos|><|im_end|>\n<|im_start|>assistant\n")
  with pytest.raises(ValueError):
    prompts.with_audio_placeholder("no turns here")


def test_speech_transcript_rule():
  assert prompts.speech_transcript("World.", None) == "World."
  assert prompts.speech_transcript("World.", "Hello") == "Hello. World."
  assert prompts.speech_transcript("World.", "Hello...") == "Hello. World."
  assert prompts.speech_transcript("World.", "你好。") == "你好。World."
