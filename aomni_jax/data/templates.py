"""Task ids and the official instruction templates (`audio_omni/prompts.py`), so that training
text matches what the released model sees at inference time."""

from __future__ import annotations

# Task ids are positions in this tuple; records store the name, batches store the id.
TASKS = ("t2a", "t2m", "tts", "add", "remove", "extract", "style")
EDIT_TASKS = ("add", "remove", "extract", "style")

_EDIT_SYSTEM = ("You are a professional sound engineer. Your task is to precisely edit the provided "
                "audio based on the user's instructions.")
SYSTEM_PROMPTS = {
    "t2a": ("You are a professional sound designer. Your task is to synthesize a high-fidelity "
            "audio clip based on the following text description."),
    "t2m": ("You are a versatile music producer and composer. Your goal is to create a "
            "high-quality, original piece of music based on the user's request. Focus on melody, "
            "harmony, rhythm, and instrumentation to capture the desired mood."),
    "tts": "Generate speech from the input text.",
    "add": _EDIT_SYSTEM, "remove": _EDIT_SYSTEM, "extract": _EDIT_SYSTEM, "style": _EDIT_SYSTEM,
}


def task_id(task: str) -> int:
  return TASKS.index(task)


def user_text(task: str, desc: str = "", target: str = "") -> str:
  """The user turn for a task. `desc` is the caption (t2a/t2m), the edited sound's label, or the
  style source; `target` the style target. TTS has an empty user turn: Qwen never sees the
  transcript, which reaches the model through the transcript encoder instead."""
  if task in ("t2a", "t2m"):
    return f"{desc}."  # The official wrapper appends a period to the prompt.
  if task == "tts":
    return ""
  if task == "add":
    return f"Add the sound of '{desc}' to the input audio."
  if task == "remove":
    return f"Remove the sound of '{desc}' from the input audio."
  if task == "extract":
    return f"Extract the sound of '{desc}' from the input audio."
  if task == "style":
    return f"Change the sound of '{desc}' to '{target}'."
  raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def chat_prompt(task: str, user: str) -> str:
  """The full Qwen chat string the official code tokenises (no chat template involved)."""
  return (f"<|im_start|>system\n{SYSTEM_PROMPTS[task]}<|im_end|>\n<|im_start|>user\n{user}"
          "<|im_end|>\n<|im_start|>assistant\n")
