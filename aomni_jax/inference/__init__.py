"""The product side: converted model directories, requests for every task, batch and long-form
generation (see `model_dir`, `pipeline`, `requests`, `engine`, `longform`, `batch`)."""
