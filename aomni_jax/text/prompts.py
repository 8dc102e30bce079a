"""Qwen prompt templates of every task (official_spec §2.2) and the chat markup around them.

The official code builds the chat markup as a plain string (no `apply_chat_template`), so the
exact bytes matter: they decide the Qwen token sequence and therefore the conditioning.
"""

from __future__ import annotations

SYSTEM_PROMPTS = {
    "T2A": ("You are a professional sound designer. Your task is to synthesize a high-fidelity "
            "audio clip based on the following text description."),
    "T2M": ("You are a versatile music producer and composer. Your goal is to create a "
            "high-quality, original piece of music based on the user's request. Focus on melody, "
            "harmony, rhythm, and instrumentation to capture the desired mood."),
    "TTS": "Generate speech from the input text.",
    "V2A": ("You are a professional foley artist. Understand this video and create the sounds "
            "for this video."),
    "V2M": ("You are a versatile music producer. Create a high-quality background music track "
            "that fits the style, energy, and mood of this video."),
    "EDIT": ("You are a professional sound engineer. Your task is to precisely edit the provided "
             "audio based on the user's instructions."),
    "UNDERSTANDING": ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, "
                      "capable of perceiving auditory and visual inputs, as well as generating "
                      "text and speech."),
}

EDIT_TEMPLATES = {
    "Add": "Add the sound of '{desc}' to the input audio.",
    "Remove": "Remove the sound of '{desc}' from the input audio.",
    "Extract": "Extract the sound of '{desc}' from the input audio.",
    "Style Transfer": "Change the sound of '{source}' to '{target}'.",
}

GENERATION_TASKS = ("T2A", "T2M", "TTS", "V2A", "V2M")
EDIT_TASKS = tuple(EDIT_TEMPLATES)
VIDEO_PLACEHOLDER = "<|vision_bos|><|VIDEO|><|vision_eos|>"
AUDIO_PLACEHOLDER = "<|audio_bos|><|AUDIO|><|audio_eos|>"
_ASSISTANT_TURN = "<|im_end|>\n<|im_start|>assistant"


def chat_markup(system: str, user: str, *, video: bool = False) -> str:
  """`<|im_start|>system…<|im_end|>` + user turn + open assistant turn, as the official strings.

  With `video`, the user turn ends with a newline and the video placeholder.
  """
  if video:
    user = f"{user}\n{VIDEO_PLACEHOLDER}"
  return (f"<|im_start|>system\n{system}<|im_end|>\n"
          f"<|im_start|>user\n{user}<|im_end|>\n"
          "<|im_start|>assistant\n")


def edit_instruction(task: str, desc: str = "", source: str = "", target: str = "") -> str:
  """The user sentence of an editing task (also what the API passes as `text_prompt`)."""
  if task not in EDIT_TEMPLATES:
    raise ValueError(f"edit task {task!r} is not one of {EDIT_TASKS}")
  return EDIT_TEMPLATES[task].format(desc=desc, source=source, target=target)


def build_prompt(task: str, text: str = "", *, desc: str | None = None, source: str = "",
                 target: str = "") -> str:
  """The Qwen prompt string for `task`, exactly as `audio_omni/prompts.py::build_prompt` builds it.

  T2A/T2M append "." to the description; TTS never shows the transcript to Qwen; V2A/V2M add
  the video placeholder; editing tasks fill the instruction template (`desc` defaults to `text`).
  """
  task = task.strip()
  if task in ("T2A", "T2M"):
    return chat_markup(SYSTEM_PROMPTS[task], f"{text}.")
  if task == "TTS":
    return chat_markup(SYSTEM_PROMPTS["TTS"], "")
  if task in ("V2A", "V2M"):
    return chat_markup(SYSTEM_PROMPTS[task], text, video=True)
  if task in EDIT_TEMPLATES:
    instruction = edit_instruction(task, desc=text if desc is None else desc, source=source,
                                   target=target)
    return chat_markup(SYSTEM_PROMPTS["EDIT"], instruction)
  raise ValueError(f"unknown task {task!r}; expected one of {GENERATION_TASKS + EDIT_TASKS}")


def with_audio_placeholder(prompt: str) -> str:
  """Gradio's audio-prompt variant: the audio placeholder goes right before the assistant turn."""
  if _ASSISTANT_TURN not in prompt:
    raise ValueError("prompt has no '<|im_end|>\\n<|im_start|>assistant' turn to put the audio "
                     "placeholder before")
  return prompt.replace(_ASSISTANT_TURN, AUDIO_PLACEHOLDER + _ASSISTANT_TURN)


def speech_transcript(text: str, reference_text: str | None = None) -> str:
  """The transcript the TTS encoder reads: `reference_text + ". " + text` for voice cloning.

  API rule: a reference not ending in ". " or "。" loses its trailing dots and gets ". ".
  """
  reference = (reference_text or "").strip()
  if not reference:
    return text
  if not reference.endswith(". ") and not reference.endswith("。"):
    reference = reference.rstrip(".") + ". "
  return reference + text
