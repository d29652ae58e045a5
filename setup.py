"""Distribution `fairseq-wd`: a fairseq plugin for weight distillation and knowledge distillation."""
from setuptools import find_packages, setup

setup(
    name="fairseq-wd",
    version="0.2.0",
    description="Weight Distillation and knowledge distillation for fairseq translation Transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.8",
    packages=find_packages(include=["fairseq_wd", "fairseq_wd.*"]),
    package_data={"fairseq_wd": ["data/*", "data/demo_teacher/*"]},
    install_requires=[
        # fairseq 0.12.2 does not import on Python >= 3.11 (mutable dataclass defaults, #5012);
        # fairseq-fixed is the same `fairseq` module with that fixed.
        'fairseq-fixed==0.12.3.1; python_version >= "3.11"',
        'fairseq==0.12.2; python_version < "3.11"',
        "torch",  # loose on purpose: keep the user's (GPU) build
        "sacrebleu>=2.0",
        "sentencepiece",
        "hydra-core",
    ],
    extras_require={"test": ["pytest"], "plot": ["matplotlib"], "deploy": ["ctranslate2"]},
    entry_points={
        "console_scripts": [
            "fairseq-wd-user-dir = fairseq_wd.cli.user_dir:main",
            "fairseq-wd-distill-data = fairseq_wd.cli.distill_data:main",
            "fairseq-wd-init-student = fairseq_wd.cli.init_student:main",
            "fairseq-wd-export = fairseq_wd.cli.export:main",
            "fairseq-wd-average-checkpoints = fairseq_wd.cli.average_checkpoints:main",
            "fairseq-wd-bench = fairseq_wd.cli.bench:main",
            "fairseq-wd-merge = fairseq_wd.cli.merge:main",
            "fairseq-wd-pipeline = fairseq_wd.cli.pipeline:main",
            "fairseq-wd-recipe = fairseq_wd.cli.recipe:main",
            "fairseq-wd-shortlist = fairseq_wd.cli.shortlist:main",
        ]
    },
)
