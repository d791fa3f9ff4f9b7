"""The corpus and tokenize jobs on Beam's PortableRunner give the local FnApiRunner's output, byte for byte.

The portable side is Beam's own local job service plus an external SDK worker pool, which starts each
job's SDK worker as a process of its own, in a folder of its own (`tests/beam_portable.py`). Each runner
runs in a folder of its own with the same relative arguments (`--input raw/demo_corpus --output
ko-corpus`, then `--input ko-corpus --output ko-tokens --tokenizer tokenizer.model`), so the paths the
outputs record are the same too. The one field that differs is the corpus manifest's `runner`
(FnApiRunner vs PortableRunner); every other byte of every output file is compared.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.corpus import build_parser
from pipelines.runner import UsageError, split_arguments
from stagekit.paths import DEMO_CORPUS, LLAMA2_TOKENIZER, REPO
from tests.support.beam_portable import portable_services

JOB_TIMEOUT_S = 300  # each job takes ~15 s here; a hung job fails the test instead of hanging it
LOCAL_WORKERS = ["--direct_num_workers=2"]  # the job service runs a job on one SDK worker (it ignores this option)


def run_job(module: str, cwd: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S)
    assert done.returncode == 0, f"{module} in {cwd} failed ({done.returncode}):\n{done.stderr[-4000:]}"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"local": folder, "portable": folder}, each holding raw/ (the demo corpus), ko-corpus/ and ko-tokens/.

    Not corpus/: `python -m` puts the current folder first on sys.path, where a folder named like one of
    the project's packages (corpus, tokenizer, checkpoints) hides the editable install's package.
    """
    base = tmp_path_factory.mktemp("portable")
    folders = {name: base / name for name in ("local", "portable")}
    for folder in folders.values():
        shutil.copytree(DEMO_CORPUS, folder / "raw" / "demo_corpus")
        (folder / "tokenizer.model").symlink_to(LLAMA2_TOKENIZER)  # a relative path; the manifest names its target
    with portable_services(base / "services") as services:
        for name, folder in folders.items():
            runner = services.pipeline_args if name == "portable" else LOCAL_WORKERS
            for module, args in (
                ("pipelines.corpus", ["--input", "raw/demo_corpus", "--output", "ko-corpus", "--num-shards", "2"]),
                ("pipelines.tokenize_corpus", ["--input", "ko-corpus", "--output", "ko-tokens", "--tokenizer", "tokenizer.model"]),
            ):
                started = services.workers_started()
                run_job(module, folder, *args, *runner)
                if name == "portable":  # it ran on a worker process the external pool started for it
                    assert services.workers_started() > started, services.pool_log.read_text()[-4000:]
    return folders


@pytest.mark.slow
def test_portable_corpus_job_matches_the_local_runner(runs):
    local, portable = (files_of(runs[name] / "ko-corpus") for name in ("local", "portable"))
    assert sorted(local) == sorted(portable)
    assert {"stats.json", "manifest.json"} <= set(local)
    assert {name.split("/")[0] for name in local} == {".kocpt-output.json", "shards", "index", "rejected", "stats.json", "manifest.json"}
    for name in local:
        if name != "manifest.json":
            assert local[name] == portable[name], f"{name} differs between the runners"
    manifests = {key: json.loads(files["manifest.json"]) for key, files in (("local", local), ("portable", portable))}
    assert (manifests["local"].pop("runner"), manifests["portable"].pop("runner")) == ("FnApiRunner", "PortableRunner")
    assert manifests["local"] == manifests["portable"]
    assert manifests["local"]["documents"] > 0 and manifests["local"]["inputs"][0]["path"].startswith("raw/demo_corpus/")
    # Byte-identical apart from that field: the same JSON text once the runner's name is swapped.
    assert local["manifest.json"].replace(b'"FnApiRunner"', b'"PortableRunner"') == portable["manifest.json"]
    assert not [path for path in runs["portable"].iterdir() if ".tmp-" in path.name]


@pytest.mark.slow
def test_portable_tokenize_job_matches_the_local_runner(runs):
    local, portable = (files_of(runs[name] / "ko-tokens") for name in ("local", "portable"))
    assert sorted(local) == sorted(portable) == sorted(
        [f"part-0000{i}-of-00002.{suffix}" for i in range(2) for suffix in ("bin", "idx")]
        + ["manifest.json", ".kocpt-output.json"])
    for name in local:  # the manifest too: it records no runner
        assert local[name] == portable[name], f"{name} differs between the runners"
    manifest = json.loads(local["manifest.json"])
    assert manifest["tokens"] > 0 and manifest["tokenizer"]["path"] == str(LLAMA2_TOKENIZER.resolve())


def other_runner_command_lines() -> list[list[str]]:
    """The `kocpt corpus` lines of the README's "Other runners" block, as argument lists."""
    text = (REPO / "README.md").read_text()
    block = text.split("**Other runners.**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[2:] for line in lines if line.startswith("kocpt corpus ")]


def test_portable_and_other_runner_options_pass_the_door_and_misspelt_ones_do_not():
    parser = build_parser(None)
    commands = other_runner_command_lines()
    assert len(commands) == 5  # PortableRunner, Flink, Spark, a Spark job server, Dataflow
    for argv in commands:
        args, beam_args = split_arguments(parser, argv)
        assert args.input and args.output and beam_args[0].startswith("--runner="), argv
    with pytest.raises(UsageError, match="--job_endpont"):
        split_arguments(parser, ["--input", "x", "--output", "y", "--runner=PortableRunner",
                                 "--job_endpont=127.0.0.1:8099"])
