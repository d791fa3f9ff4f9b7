"""What a careful new user and a hostile tester hit (issue 20's "unclear" probes), each refused in one line
or handled: one tokenizer report schema read by `kocpt eval`, `kocpt tokenizer check` on byte-level
directories, `kocpt plan`'s cluster numbers, `--config` on every stage, Ctrl-C, the dispatcher's example,
`kocpt tokenizer report`'s hint, and lm-eval's comma-separated tasks and progress bars."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kocpt import cli
from stagekit.paths import EN_HELDOUT, KO_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER, REPO

KOCPT = str(Path(sys.executable).with_name("kocpt"))
PLAN_CONFIG = str(REPO / "configs" / "llama2-7b.yaml")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def byte_level(tmp_path_factory) -> dict[str, Path]:
    """A small byte-level BPE base (English) and its Korean merge by tokenizer/merge.py: seconds, not SmolLM2's minutes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tokenizer import merge as merge_cmd
    from tokenizer.bpe_merge import train_byte_level

    root = tmp_path_factory.mktemp("byte-level")
    english = [line for line in EN_HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()][:400]
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    base.decoder = decoders.ByteLevel()
    base.train_from_iterator(english, trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=base, eos_token="<|endoftext|>").save_pretrained(root / "base")
    korean = [line for line in (KO_TRAIN / "chatbot_qa.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    (root / "ko.json").write_text(train_byte_level(korean[:500], root / "base" / "tokenizer.json", 900), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):
        assert merge_cmd.main(["--base", str(root / "base"), "--add", str(root / "ko.json"), "--output", str(root / "tok"),
                               "--eval-korean", str(KO_HELDOUT), "--eval-english", str(EN_HELDOUT),
                               "--eval-code-files", "0", "--eval-max-lines", "100", "--no-plot"]) == 0
    return {"base": root / "base", "tok": root / "tok"}


# --------------------------------------------------------------------------------------------- A: one report schema

# What tokenizer/bpe_write.py wrote before the schema (the report `kocpt eval --tokenizer-report` crashed on:
# "ValueError: Cannot specify ',' with 's'").
OLD_BYTE_LEVEL_REPORT = {
    "tokenizer": "tok", "base": "base/tokenizer.json", "kind": "byte-level BPE",
    "vocab": {"base_tokens": 49152, "added_tokens": 8000, "added_special": 0, "total": 57152},
    "merge": {"base_merges": 48900, "first_added_id": 49152, "added": 8000},
    "korean": {"/data/ko.txt": {"base": {"tokens": 200, "chars": 100, "tokens_per_char": 2.0, "tokens_per_word": 8.0},
                                "merged": {"tokens": 60, "chars": 100, "tokens_per_char": 0.6, "tokens_per_word": 2.4}}},
    "identity": {"/data/en.txt": {"lines": 3, "identical": 3, "share": 1.0, "first_difference": None}},
    "autotokenizer": {"class": "TokenizersBackend"}, "reachable": {"added": 8000, "unreachable": 0}, "defects": [],
}


def test_eval_reads_a_byte_level_merges_report(tmp_path):
    from evaluation import report

    path = tmp_path / "report.json"
    path.write_text(json.dumps(OLD_BYTE_LEVEL_REPORT), encoding="utf-8")
    figures = report.tokenizer_figures(path)
    text = report.markdown({"models": [], "texts": {}, "tokenizer": figures, "settings": {}, "files": {}, "notes": []})
    assert "Vocabulary 49,152 -> 57,152 ids (+8,000, byte-level BPE)." in text
    assert "| ko.txt | 2.000 | 0.600 |" in text
    from kocpt.demo import summarize_tokenizer  # the demo's closing summary reads the same report

    assert summarize_tokenizer(OLD_BYTE_LEVEL_REPORT).startswith("49,152 → 57,152 ids; Korean tokens/char 2.00 → 0.60")


def test_both_merge_families_write_the_one_schema_eval_reads(byte_level, tmp_path, capsys):
    from evaluation import report
    from tokenizer.report_schema import SCHEMA_VERSION, TokenizerReport

    # Byte-level: tokenizer/merge.py on a byte-level base.
    written = json.loads((byte_level["tok"] / "report.json").read_text(encoding="utf-8"))
    # SentencePiece: `kocpt tokenizer report` (the merge writes the same through tokenizer/spm_report.py).
    spm_dir = tmp_path / "spm"
    spm_dir.mkdir()
    (spm_dir / "tokenizer.model").write_bytes(LLAMA2_TOKENIZER.read_bytes())
    code, _, err = run_cli(capsys, "tokenizer", "report", "--tokenizer", spm_dir, "--base", LLAMA2_TOKENIZER, "--no-hf",
                           "--korean", KO_HELDOUT, "--code-files", 0, "--max-lines", 50, "--output", tmp_path / "spm.json")
    assert code == 0, err
    for data, kind, unit in ((written, "byte-level BPE", "ids"),
                             (json.loads((tmp_path / "spm.json").read_text(encoding="utf-8")), "sentencepiece", "pieces")):
        assert data["schema"] == SCHEMA_VERSION and data["kind"] == kind
        for key in ("tokenizer", "base", "vocab", "merge", "korean", "identity", "other_tokens_per_char", "defects"):
            assert key in data, (kind, key)
        assert {"base_size", "added", "size"} <= set(data["vocab"]) and data["vocab"]["unit"] == unit
        (row,) = data["korean"].values()
        for side in ("base", "merged"):
            assert {"tokens_per_char", "tokens_per_word", "byte_token_share"} <= set(row[side]), (kind, row)
        assert TokenizerReport.from_dict(data).to_dict() == data
    # The keys readers relied on stay.
    assert {"base_tokens", "added_tokens", "total"} <= set(written["vocab"]) and "first_added_id" in written["merge"]
    assert written["autotokenizer"]["class"] and written["reachable"]["unreachable"] == 0
    figures = report.tokenizer_figures(byte_level["tok"] / "report.json")
    assert figures["vocab"] == {"base_size": 500, "added": written["vocab"]["added"], "size": written["vocab"]["size"],
                                "unit": "ids"}
    assert figures["korean"][KO_HELDOUT.name]["merged"]["tokens_per_char"] < figures["korean"][KO_HELDOUT.name]["base"]["tokens_per_char"]


def test_not_a_tokenizer_report_is_one_line(tmp_path):
    from evaluation import BadInput, report

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"korean": {"x": {"base": {}}}}), encoding="utf-8")
    with pytest.raises(BadInput, match="without base/merged figures"):
        report.tokenizer_figures(path)
    with pytest.raises(BadInput, match="a directory; give its report.json"):
        report.tokenizer_figures(tmp_path)


# --------------------------------------------------------------------------------------------- B: check on byte-level


def test_tokenizer_check_runs_the_byte_level_merges_checks(byte_level, tmp_path, capsys):
    code, out, err = run_cli(capsys, "tokenizer", "check", byte_level["tok"])
    assert code == 0, err
    assert "byte-level BPE" in out and "unreachable added tokens: 0 of" in out and "defects: none" in out
    code, out, err = run_cli(capsys, "tokenizer", "check", byte_level["tok"], "--base", byte_level["base"],
                             "--json", tmp_path / "check.json")
    assert code == 0, err
    assert "english: 100.00% of" in out and "python-stdlib: 100.00% of" in out
    assert json.loads((tmp_path / "check.json").read_text())["defects"] == []
    # A broken merge is caught: without its first added merge, the first added token cannot be produced.
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in byte_level["tok"].iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    spec = json.loads((broken / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["merges"] = [m for m in spec["model"]["merges"]
                               if "".join(m.split(" ") if isinstance(m, str) else m) != min(
                                   (t for t, i in spec["model"]["vocab"].items() if i >= 500),
                                   key=spec["model"]["vocab"].get)]
    (broken / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    code, out, _ = run_cli(capsys, "tokenizer", "check", broken, "--base", byte_level["base"])
    assert code == 1 and "added tokens unreachable" in out


def test_tokenizer_check_refuses_a_base_of_the_other_family_in_one_line(byte_level, capsys):
    code, _, err = run_cli(capsys, "tokenizer", "check", byte_level["tok"], "--base", LLAMA2_TOKENIZER)
    assert code == 2 and "not a byte-level BPE tokenizer.json" in one_line(err)


# --------------------------------------------------------------------------------------------- C: plan's cluster


@pytest.mark.parametrize("args, needle", [
    (["--nodes", "0"], "cluster.nodes (--nodes) must be an integer >= 1, got 0"),
    (["--nodes", "-2"], "cluster.nodes (--nodes) must be an integer >= 1, got -2"),
    (["--gpus-per-node", "0"], "cluster.gpus_per_node (--gpus-per-node) must be an integer >= 1, got 0"),
    (["--gpu-memory-gib", "-5"], "cluster.gpu_memory_gib (--gpu-memory-gib) must be a number of GiB > 0, got -5.0"),
    (["--gpu-memory-gib", "nan"], "must be a number of GiB > 0, got nan"),
    (["--set", "cluster.nodes=-3"], "cluster.nodes (--nodes) must be an integer >= 1, got -3"),
    (["--set", "cluster.assumed_mfu=0"], "cluster.assumed_mfu must be in (0, 1], got 0"),
    (["--set", "peak_tflops_per_gpu=0"], "pretrain.peak_tflops_per_gpu: must be a number > 0, got 0"),
])
def test_plan_refuses_impossible_cluster_numbers_in_one_line(args, needle, capsys):
    code, out, err = run_cli(capsys, "plan", PLAN_CONFIG, *args)
    assert code == 2 and out == "" and needle in one_line(err)


def test_plan_refuses_a_bad_cluster_section_from_yaml(tmp_path, capsys):
    text = Path(PLAN_CONFIG).read_text(encoding="utf-8").replace("  gpus_per_node: 8", "  gpus_per_node: -8")
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    code, _, err = run_cli(capsys, "plan", config)
    assert code == 2 and "cluster.gpus_per_node (--gpus-per-node) must be an integer >= 1, got -8" in one_line(err)


# --------------------------------------------------------------------------------------------- D: --config everywhere


def commands(table=cli.COMMANDS, prefix="kocpt"):
    for name, entry in table.items():
        if isinstance(entry, dict):
            yield from commands(entry, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", entry[0]


@pytest.mark.parametrize("prog, module_name", list(commands()))
def test_every_stage_command_takes_config_and_set(prog, module_name):
    parser = importlib.import_module(module_name).build_parser(prog)
    assert {"--config", "--set"} <= set(parser._option_string_actions), prog


def test_pretrain_and_plan_take_config_as_the_readme_says(tmp_path, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--config", tmp_path / "missing.yaml", "--check")
    assert code == 2 and f"{tmp_path / 'missing.yaml'}: no such config file" in one_line(err)
    code, by_option, err = run_cli(capsys, "plan", "--config", PLAN_CONFIG, "--mfu", "0.4")
    assert code == 0, err
    assert run_cli(capsys, "plan", PLAN_CONFIG, "--mfu", "0.4")[1] == by_option
    code, _, err = run_cli(capsys, "plan", PLAN_CONFIG, "--config", REPO / "configs" / "demo.yaml")
    assert code == 2 and "two configs given" in one_line(err)


def test_a_command_without_a_section_still_checks_its_config(tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", "gguf", "--model", tmp_path, "--output", tmp_path / "m.gguf",
                           "--set", "evl.tasks=[]")
    assert code == 2 and "unknown section 'evl'" in one_line(err)


# --------------------------------------------------------------------------------------------- E: Ctrl-C


def test_interrupted_stage_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    """Any stage, through the dispatcher: its cleanup runs, then one line."""
    staging = tmp_path / "out.tmp-1"

    def interrupted_main(argv, prog=None):
        staging.mkdir()
        try:
            raise KeyboardInterrupt
        finally:
            staging.rmdir()

    module = importlib.import_module("pretrain.plan")
    monkeypatch.setattr(module, "main", interrupted_main)
    code, _, err = run_cli(capsys, "plan", "x.yaml")
    assert code == 130 and one_line(err) == "kocpt plan: interrupted" and not staging.exists()


@pytest.mark.slow
def test_ctrl_c_on_the_corpus_job_cleans_up_and_says_so_in_one_line(tmp_path):
    big = tmp_path / "raw.txt"
    lines = (KO_TRAIN / "news_comments.txt").read_text(encoding="utf-8").splitlines()
    # Large enough (~17 MB, a minute on one worker) that the job is still running when Ctrl-C comes: at 3.4 MB
    # the faster job finished before it (2026-12-07).
    big.write_text("\n".join(lines * max(1, 200_000 // max(len(lines), 1))) + "\n", encoding="utf-8")
    output = tmp_path / "corpus"
    # SIGINT as a terminal's foreground job has it, whoever started pytest: a shell starts a background job
    # (`pytest ... &`) with SIGINT ignored, its children inherit that, and Ctrl-C would then do nothing.
    process = subprocess.Popen([KOCPT, "corpus", "--input", str(big), "--output", str(output), "--direct_num_workers=1"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("corpus.tmp-*")) and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        time.sleep(2)  # the Beam job is running
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "kocpt corpus: interrupted", err
    assert not [p for p in tmp_path.glob("corpus.tmp-*") if p.is_dir()] and not output.exists()


# --------------------------------------------------------------------------------------------- F: the example


@pytest.mark.parametrize("group", [[], ["tokenizer"], ["checkpoints"], ["export"]])
def test_the_example_the_dispatcher_prints_works(group, capsys):
    code, out, _ = run_cli(capsys, *group, "--help")
    assert code == 0
    example = out.strip().splitlines()[-1].split("Example: ", 1)[1].split()
    assert example[0] == "kocpt" and example[-1] == "--help"
    with pytest.raises(SystemExit) as exit_:
        cli.main(example[1:])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- G: report's hint


def test_tokenizer_report_on_a_non_tokenizer_dir_gives_a_hint_that_helps(tmp_path, byte_level, capsys):
    code, _, err = run_cli(capsys, "tokenizer", "report", "--tokenizer", tmp_path, "--base", LLAMA2_TOKENIZER)
    line = one_line(err)
    assert code == 2 and "no tokenizer.model" in line and "--no-hf" not in line
    code, _, err = run_cli(capsys, "tokenizer", "report", "--tokenizer", byte_level["tok"], "--base", LLAMA2_TOKENIZER)
    line = one_line(err)
    assert code == 2 and "not a byte-level BPE tokenizer.json (it is sentencepiece)" in line


def test_tokenizer_report_reads_a_byte_level_merge_as_its_merge_did(byte_level, tmp_path, capsys):
    """`kocpt tokenizer report` is the family's report: on the byte-level merge it gives the figures the merge wrote."""
    code, out, err = run_cli(capsys, "tokenizer", "report", "--tokenizer", byte_level["tok"], "--base", byte_level["base"],
                             "--korean", KO_HELDOUT, "--english", EN_HELDOUT, "--code-files", 0, "--max-lines", 100,
                             "--output", tmp_path / "report.json", "--plot", tmp_path / "report.png")
    assert code == 0, err
    again = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    written = json.loads((byte_level["tok"] / "report.json").read_text(encoding="utf-8"))
    assert again["kind"] == "byte-level BPE" and again["merge"] is None and again["defects"] == []
    assert again["vocab"] == written["vocab"] and again["korean"] == written["korean"]
    assert again["identity"] == written["identity"] and (tmp_path / "report.png").stat().st_size > 0
    assert "vocabulary: 500 -> " in out
    code, _, err = run_cli(capsys, "tokenizer", "check", byte_level["tok"])  # ... and what it points at works
    assert code == 0, err


# --------------------------------------------------------------------------------------------- H: lm-eval's forms


def test_eval_takes_lm_evals_comma_separated_tasks(tmp_path, capsys):
    # Through the command: both tasks are found (the run stops later, at the model directory that is empty),
    # not refused as one unknown task 'korsts,nsmc'.
    code, _, err = run_cli(capsys, "eval", "--model", tmp_path, "--output", tmp_path / "eval", "--korean", KO_HELDOUT,
                           "--english", "--max-documents", 2, "--tasks", "korsts,nsmc", "--no-progress")
    assert code == 2 and "not a Hugging Face model directory" in one_line(err), err
    from evaluation.config import load_eval_config
    from evaluation.lm_eval_tasks import split_task_names

    assert split_task_names(["klue_sts,klue_nli", "nsmc", "korsts, nsmc"]) == ["klue_sts", "klue_nli", "nsmc", "korsts"]
    assert load_eval_config(None, ["eval.tasks=[klue_sts,klue_nli]"]).tasks == ["klue_sts", "klue_nli"]
    assert load_eval_config(None, flags={"tasks": ["kornli,nsmc"]}).tasks == ["kornli", "nsmc"]
    from evaluation.run import build_parser

    parse = build_parser("kocpt eval").parse_args
    for argv, tasks in ((["--tasks", "korsts", "--tasks", "nsmc,kornli"], ["korsts", "nsmc", "kornli"]),
                        (["--tasks", "korsts", "nsmc"], ["korsts", "nsmc"]), (["--tasks"], []), ([], None)):
        args = parse(["--model", "m", "--output", "o", *argv])
        assert (None if args.tasks is None else split_task_names(args.tasks)) == tasks, argv


@pytest.mark.slow
def test_no_progress_quiets_lm_evals_progress_bars(tmp_path, capfd):
    import torch
    from transformers import AutoModelForCausalLM

    from evaluation.lm_eval_tasks import run_tasks
    from tests.support.models import fast_tokenizer

    tokenizer = fast_tokenizer({"<s>": 0, "</s>": 1, "<unk>": 2, **{chr(0xAC00 + i): 3 + i for i in range(40)},
                                **{c: 43 + i for i, c in enumerate("0123456789 ")}}, [])
    from transformers import LlamaConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64)).eval()
    nsmc = tmp_path / "ratings_test.txt"
    nsmc.write_text("id\tdocument\tlabel\n1\t가나다\t1\n2\t라마바\t0\n3\t사아자\t1\n", encoding="utf-8")
    for progress in (True, False):
        capfd.readouterr()
        out = run_tasks(model, tokenizer, ["nsmc"], task_data={"nsmc": str(nsmc)}, progress=progress)
        assert out["n_samples"]["nsmc"]["effective"] == 3
        err = capfd.readouterr().err
        bars = [line for line in err.replace("\r", "\n").splitlines() if "it/s]" in line or "%|" in line]
        assert bool(bars) == progress, err
    import tqdm

    assert tqdm.tqdm.__name__ == "tqdm"  # restored afterwards
