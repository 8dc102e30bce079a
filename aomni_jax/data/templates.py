"""Task ids of the dataset and the user turn of each example, taken from the official templates
(`aomni_jax.text.prompts`), so that training text matches what the model sees at inference."""

from __future__ import annotations

from aomni_jax.text import prompts

# Task ids are positions in this tuple; records store the name, batches store the id.
TASKS = ("t2a", "t2m", "tts", "add", "remove", "extract", "style", "v2a", "v2m")
VIDEO_TASKS = ("v2a", "v2m")
EDIT_TASKS = ("add", "remove", "extract", "style")
# Dataset task name → task name of `aomni_jax.text.prompts`.
PROMPT_TASKS = {"t2a": "T2A", "t2m": "T2M", "tts": "TTS", "add": "Add", "remove": "Remove",
                "extract": "Extract", "style": "Style Transfer", "v2a": "V2A", "v2m": "V2M"}


def task_id(task: str) -> int:
  return TASKS.index(task)


def user_text(task: str, desc: str = "", target: str = "") -> str:
  """The user turn of an example. `desc` is the caption (t2a/t2m), the edited sound's label, or
  the style source; `target` the style target. TTS has an empty user turn: Qwen never sees the
  transcript, which reaches the model through the transcript encoder instead."""
  if task in ("t2a", "t2m"):
    return f"{desc}."  # The official wrapper appends a period to the prompt.
  if task == "tts":
    return ""
  if task in VIDEO_TASKS:
    return desc  # as typed (default ""): no period; the video placeholder follows
  if task in EDIT_TASKS:
    return prompts.edit_instruction(PROMPT_TASKS[task], desc=desc, source=desc, target=target)
  raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def chat_prompt(task: str, user: str) -> str:
  """The full Qwen chat string of an example (system prompt of its task + its user turn)."""
  system = prompts.SYSTEM_PROMPTS["EDIT" if task in EDIT_TASKS else PROMPT_TASKS[task]]
  return prompts.chat_markup(system, user, video=task in VIDEO_TASKS)
