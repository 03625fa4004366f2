from setuptools import find_packages, setup

# xxhash: the teacher cache's per-sample keys (XXH3-128), imported only when a cache is used.
CORE = ["numpy>=1.24", "PyYAML>=6.0", "schema>=0.7.5", "tqdm>=4.60", "xxhash>=3.0"]
TORCH = ["torch>=2.1"]
TENSORFLOW = ["tensorflow-cpu>=2.16"]
# PT2E quantization-aware training; torchao 0.18 is built against torch >= 2.11.
QUANTIZATION = ["torch>=2.11", "torchao>=0.18"]
# Hugging Face Trainer integration; tested with transformers 5.23 (Trainer needs accelerate).
TRANSFORMERS = ["torch>=2.1", "transformers>=5.0", "accelerate>=1.1"]
# Plots of the run report (neural-distill report); tested with matplotlib 3.11.2.
REPORT = ["matplotlib>=3.9"]

setup(
    name="neural_distill",
    version="0.1.0",
    description="Knowledge distillation for PyTorch and TensorFlow: YAML experiments, hooks "
                "for your own training loop, and a built-in loop.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["neural_distill", "neural_distill.*"]),
    python_requires=">=3.9",
    install_requires=CORE,
    extras_require={
        "torch": TORCH,
        "tensorflow": TENSORFLOW,
        "quantization": QUANTIZATION,
        "transformers": TRANSFORMERS,
        "report": REPORT,
        "all": QUANTIZATION + TENSORFLOW + TRANSFORMERS + REPORT,
        "dev": QUANTIZATION + TENSORFLOW + TRANSFORMERS + REPORT + ["pytest>=7",
                                                                   "mnist1d>=0.0.2"],
    },
    entry_points={"console_scripts": ["neural-distill=neural_distill.cli:main"]},
    package_data={"neural_distill": ["py.typed"]},
)
