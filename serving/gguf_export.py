"""`kocpt export gguf`: a Hugging Face Llama directory -> GGUF, with llama.cpp's own converter.

    kocpt export gguf --model final/ --output model-f16.gguf --outtype f16
    llama-quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M          # llama.cpp's tools
    llama-cli -m model-q4_k_m.gguf -p "대한민국의 수도는" -n 64

The converter is `convert_hf_to_gguf.py` of the llama.cpp release vendored in the `llama-cpp-python`
sdist pinned below, fetched once with pip and cached (`$KOCPT_CACHE`, default ~/.cache/kocpt);
`--llama-cpp DIR` uses your own llama.cpp checkout instead. Nothing of the conversion is ours. Before
the file is renamed into place its vocabulary is read back (gguf-py) and compared with the model's
`tokenizer.model` (or, for a byte-level BPE model such as SmolLM2 with Korean merges, its tokenizer.json);
the converter runs through `serving/gguf_pre_tokenizer.py`, which keeps the base's pre-tokenizer name; with `llama-cpp-python` installed (`pip install 'kocpt[gguf]'`) llama.cpp itself then
checks token ids and log-probabilities against the Hugging Face model (`serving/gguf_check.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from serving import BadInput
from stagekit.config import add_config_arguments, check_config_arguments
from stagekit.outputs import check_output, remove_stale_staging, staging_prefix
from stagekit.wheels import cache_dir, cache_lock

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist vendors llama.cpp's sources, converter included
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
STAGE = "export gguf"  # names this stage's outputs (stagekit.outputs)
_SOURCES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


def llama_cpp_sources(cache: Path | None = None) -> Path:
    """The converter's folder (convert_hf_to_gguf.py, conversion/, gguf-py/), fetched from the sdist once."""
    target = (cache or cache_dir()) / f"llama.cpp-{LLAMA_CPP_PYTHON}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    with cache_lock(target.parent, target.name):
        if not (target / "convert_hf_to_gguf.py").is_file():
            _fetch_sources(target)
    return target


def llama_cpp_sdist(directory: Path) -> Path:
    """The pinned llama-cpp-python sdist (llama.cpp's sources vendored), downloaded by pip into `directory`."""
    result = subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                             "--no-binary", ":all:", "--no-deps", "--quiet", "-d", str(directory)],
                            capture_output=True, text=True)
    archives = list(Path(directory).glob("llama_cpp_python-*.tar.gz"))
    if result.returncode != 0 or not archives:
        last = (result.stderr.strip().splitlines() or ["no archive"])[-1]
        raise BadInput(f"cannot fetch llama-cpp-python {LLAMA_CPP_PYTHON} with pip ({last}); "
                       "pass --llama-cpp DIR, a llama.cpp checkout")
    return archives[0]


def _fetch_sources(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".llama.cpp-") as tmp:
        print(f"fetching llama-cpp-python {LLAMA_CPP_PYTHON}'s sdist for llama.cpp's converter (once; cached in {target})",
              flush=True)
        root = unpack_llama_cpp_sdist(llama_cpp_sdist(Path(tmp)), Path(tmp) / "unpacked",
                                      [f"vendor/llama.cpp/{source}" for source in _SOURCES])
        (root / "vendor" / "llama.cpp").rename(target)


def unpack_llama_cpp_sdist(sdist: Path, directory: Path, paths: list[str]) -> Path:
    """The sdist's files under `paths` (from its root; a trailing / for a folder) unpacked into `directory`;
    returns the sdist's root folder there."""
    root = sdist.name[: -len(".tar.gz")]
    wanted = tuple(f"{root}/{path}" for path in paths)
    with tarfile.open(sdist) as archive:
        members = [member for member in archive.getmembers() if member.name.startswith(wanted)]
        archive.extractall(directory, members=members, filter="data")
    return directory / root


def converter(llama_cpp: str | Path | None) -> tuple[Path, Path]:
    """(convert_hf_to_gguf.py, its gguf-py folder) of a checkout or of the cached sdist."""
    root = Path(llama_cpp) if llama_cpp else llama_cpp_sources()
    script = root / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise BadInput(f"{root}: no convert_hf_to_gguf.py (not a llama.cpp checkout)")
    return script, root / "gguf-py"


def check_model(model: Path) -> tuple[int, list[str]]:
    """(embedding rows, the GGUF's expected tokens) after checking the directory is a model of a family this
    project can export (`mcore_llama.families`: Llama, Qwen2)."""
    from mcore_llama.families import family_of_hf_config
    from tokenizer.family import family_of

    config_file = model / "config.json"
    if not config_file.is_file():
        raise BadInput(f"{model}: not a Hugging Face model directory (no config.json)")
    config = json.loads(config_file.read_text())
    try:
        family = family_of_hf_config(config)
    except ValueError as exc:
        raise BadInput(f"{model}: {exc}") from None
    tokenizer = family_of(model)  # BadInput: no tokenizer.model or tokenizer.json for llama.cpp's converter to read
    pieces, what = tokenizer.tokens(model), tokenizer.tokenizer_file(model).name
    rows = int(config.get("vocab_size", 0))
    if rows > len(pieces) and unreachable_rows_explained(model, family, rows, len(pieces)):
        # llama.cpp's converter names rows no id reaches [PAD<id>] (type UNUSED), as in Qwen2.5's own GGUFs.
        return rows, pieces + [f"[PAD{i}]" for i in range(len(pieces), rows)]
    if rows != len(pieces):
        raise BadInput(f"{model}: {rows:,} vocabulary rows but {what} has {len(pieces):,} ids; the converter "
                       "would turn the difference into [PAD] tokens llama.cpp can generate (export a model whose rows "
                       "equal its pieces: `kocpt checkpoints convert --to hf` drops Megatron's padding)")
    return rows, pieces


def unreachable_rows_explained(model: Path, family, rows: int, ids: int) -> bool:
    """Rows past the tokenizer's ids are expected: its family ships them (Qwen2), or resize padded to
    them and listed them in the generation config's `suppress_tokens`."""
    generation_file = model / "generation_config.json"
    suppressed = json.loads(generation_file.read_text()).get("suppress_tokens") if generation_file.is_file() else None
    return family.rows_may_exceed_ids or sorted(suppressed or []) == list(range(ids, rows))


def gguf_vocabulary(path: Path, gguf_py: Path) -> list[str]:
    """The GGUF's tokens as llama.cpp's own gguf-py reads them (serving/gguf_tokens.py, in a process of its own)."""
    result = subprocess.run([sys.executable, "-m", "serving.gguf_tokens", str(path)], capture_output=True, text=True,
                            env=with_python_path(gguf_py))
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()] or ["no output"]
        raise BadInput(f"{path}: llama.cpp's gguf-py could not read the vocabulary back: {lines[-1]}")
    return json.loads(result.stdout)


def with_python_path(*folders: Path) -> dict[str, str]:
    """This environment with `folders` first on PYTHONPATH (llama.cpp's converter and gguf-py are not installed)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, folders), os.environ.get("PYTHONPATH", "")])}


def is_gguf_file(path: Path) -> bool:
    """An earlier export (what --overwrite may replace): a file that starts with GGUF's magic."""
    try:
        with open(path, "rb") as handle:
            return path.is_file() and handle.read(4) == b"GGUF"
    except OSError:
        return False


def export(model: str | Path, output: str | Path, outtype: str = "f16", llama_cpp: str | Path | None = None,
           overwrite: bool = False) -> dict:
    model, output = Path(model), Path(output)
    if outtype not in OUTTYPES:
        raise BadInput(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    check_output(output, stage=STAGE, overwrite=overwrite, inputs={"--model": model}, recognise=is_gguf_file)
    rows, pieces = check_model(model)  # pieces: the tokenizer's, then a [PAD<id>] per unreachable row
    script, gguf_py = converter(llama_cpp)
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output, lambda line: print(f"export: {line}", file=sys.stderr))
    fd, tmp_name = tempfile.mkstemp(prefix=staging_prefix(output), dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # Through serving/gguf_pre_tokenizer.py: a byte-level tokenizer keeps its base's pre-tokenizer name.
        result = subprocess.run([sys.executable, "-m", "serving.gguf_pre_tokenizer", str(script), str(model),
                                 "--outfile", str(tmp), "--outtype", outtype], capture_output=True, text=True,
                                env=with_python_path(script.parent, gguf_py))
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()] or ["no output"]
            raise BadInput(f"llama.cpp's converter failed on {model}: {lines[-1]}")
        tokens = gguf_vocabulary(tmp, gguf_py)
        if tokens != pieces:
            first = next((i for i, (a, b) in enumerate(zip(tokens, pieces)) if a != b), min(len(tokens), len(pieces)))
            raise BadInput(f"{output}: the GGUF vocabulary ({len(tokens):,} tokens) differs from the model's tokenizer "
                           f"({len(pieces):,} ids) at id {first}")
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o666 & ~mask)  # mkstemp's 0600 would make the GGUF private to the exporting user
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    pre = [line.split("pre-tokenizer declared as ", 1)[1].split(",")[0].strip("'\"") for line in result.stderr.splitlines()
           if "pre-tokenizer declared as " in line]
    return {"model": str(model), "output": str(output), "outtype": outtype, "converter": str(script),
            "pre_tokenizer_declared_as_base": pre[0] if pre else None,
            "vocab": len(tokens), "model_rows": rows, "bytes": output.stat().st_size,
            "seconds": round(time.perf_counter() - started, 2)}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Turn a Hugging Face Llama directory into a GGUF file with llama.cpp's "
                                     "own convert_hf_to_gguf.py, then check it with llama.cpp when llama-cpp-python is "
                                     "installed.", epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", required=True, metavar="HF_DIR", help="exported model (config.json, safetensors, tokenizer.model or a byte-level tokenizer.json)")
    parser.add_argument("--output", required=True, metavar="FILE.gguf", help="GGUF file to write")
    parser.add_argument("--outtype", choices=OUTTYPES, default="f16", help="tensor type (default: %(default)s)")
    add_config_arguments(parser, (), reads="no section (the export has no settings of its own in a run config)")
    parser.add_argument("--llama-cpp", metavar="DIR", help="your llama.cpp checkout (default: the pinned release, cached)")
    parser.add_argument("--texts", action="append", default=[], metavar="FILE", help="texts for the llama.cpp id check (repeatable)")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the llama.cpp check")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        check_config_arguments(args.config, args.overrides)
        for path in args.texts:
            if not Path(path).is_file():
                raise BadInput(f"{path}: file not found")
        report = export(args.model, args.output, args.outtype, args.llama_cpp, args.overwrite)
        print(f"wrote {report['output']} ({report['outtype']}, {report['bytes'] / 2**20:.1f} MiB, "
              f"{report['vocab']:,} tokens = the model's tokenizer) in {report['seconds']:.1f} s", flush=True)
        if report["pre_tokenizer_declared_as_base"]:
            print(f"pre-tokenizer: declared as {report['pre_tokenizer_declared_as_base']} (the base's; its checksum "
                  "changed only through the merges tokenizer/merge.py appended)")
        if not args.check:
            return 0
        from serving.gguf_check import check_gguf, llama_cpp_available, summary_lines

        if not llama_cpp_available():
            print("llama.cpp check: not run (pip install 'kocpt[gguf]' for llama-cpp-python)")
            return 0
        checked = check_gguf(args.output, args.model, args.texts)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(checked)))
    return 1 if checked["defects"] else 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
