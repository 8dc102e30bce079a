"""Text inputs: the transcript front end (pinyin symbols), the F5 vocabulary, prompt templates."""
