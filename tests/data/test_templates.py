"""Instruction text matches the official prompt builder for every task."""

import pytest

from aomni_jax.data import templates
from aomni_jax.text import prompts


@pytest.mark.parametrize("task, desc, target, official", [
    ("t2a", "a dog barking", "", ("T2A", "a dog barking", {})),
    ("t2m", "calm piano", "", ("T2M", "calm piano", {})),
    ("tts", "", "", ("TTS", "ignored transcript", {})),
    ("add", "dog", "", ("Add", "dog", {})),
    ("remove", "dog", "", ("Remove", "dog", {})),
    ("extract", "dog", "", ("Extract", "dog", {})),
    ("style", "piano", "violin", ("Style Transfer", "", {"source": "piano", "target": "violin"})),
    ("v2a", "a dog barks", "", ("V2A", "a dog barks", {})),
    ("v2m", "", "", ("V2M", "", {})),
])
def test_chat_prompt_equals_the_official_prompt(task, desc, target, official):
  name, text, kwargs = official
  ours = templates.chat_prompt(task, templates.user_text(task, desc, target))
  assert ours == prompts.build_prompt(name, text, **kwargs)


def test_task_ids_are_stable():
  assert [templates.task_id(t) for t in templates.TASKS] == list(range(9))
  assert templates.TASKS[:3] == ("t2a", "t2m", "tts") and templates.TASKS[7:] == ("v2a", "v2m")
  with pytest.raises(ValueError):
    templates.user_text("i2a")
