"""stagekit.outputs: the one rule every stage's output follows (nothing a user owns is destroyed).

Each test is written from a loss or leftover seen in a probe of the stages (issue 20); the stage-level
probes are in tests/unit/test_output_probes.py.
"""

from __future__ import annotations

import os

import pytest

from stagekit.errors import BadInput
from stagekit.outputs import (
    MARKER,
    check_output,
    publish_directory,
    read_marker,
    refuse_overlap,
    remove_stale_staging,
    staged_directory,
    staging_prefix,
    write_marker,
)


def make_dir(path, files=("a.txt",)):
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("user data")
    return path


# ------------------------------------------------------------------------------- rule 1: never an input

@pytest.mark.parametrize("spelling", ["same", "trailing-slash", "dot-dot", "symlink"])
def test_output_equal_to_an_input_is_refused_however_spelled(tmp_path, spelling):
    data = make_dir(tmp_path / "data")
    (tmp_path / "link").symlink_to(data)
    (tmp_path / "sub").mkdir()
    output = {"same": data, "trailing-slash": f"{data}/", "dot-dot": tmp_path / "sub" / ".." / "data",
              "symlink": tmp_path / "link"}[spelling]
    with pytest.raises(BadInput, match="is --input .* itself"):
        refuse_overlap(output, {"--input": [str(data)]})


def test_output_containing_an_input_is_refused(tmp_path):
    tokenizer = make_dir(tmp_path / "base", ["tokenizer.model"])
    with pytest.raises(BadInput, match="contains --base"):
        refuse_overlap(tmp_path, {"--base": tokenizer / "tokenizer.model"})


def test_output_inside_an_input_is_refused(tmp_path):
    raw = make_dir(tmp_path / "raw")
    with pytest.raises(BadInput, match="lies inside --input"):
        refuse_overlap(raw / "clean", {"--input": [raw]})


def test_an_input_glob_is_compared_by_its_folder(tmp_path):
    raw = make_dir(tmp_path / "raw")
    with pytest.raises(BadInput, match="lies inside --input"):
        refuse_overlap(raw / "out", {"--input": [f"{raw}/*.txt"]})
    refuse_overlap(tmp_path / "out", {"--input": [f"{raw}/*.txt"]})  # a sibling is fine


def test_unrelated_remote_and_hub_inputs_pass(tmp_path):
    refuse_overlap(tmp_path / "out", {"--input": ["hf:klue:ynat", "gs://bucket/raw"], "--model": None})
    with pytest.raises(BadInput, match="overlaps"):
        refuse_overlap("gs://bucket/raw/out", {"--input": ["gs://bucket/raw"]})


# ------------------------------------------------------------------ rule 2: replace only our own output

def test_existing_output_needs_overwrite(tmp_path):
    out = make_dir(tmp_path / "out")
    write_marker(out, "checkpoints resize")
    with pytest.raises(BadInput, match="already exists"):
        check_output(out, stage="checkpoints resize", overwrite=False)
    assert check_output(out, stage="checkpoints resize", overwrite=True) == out


def test_overwrite_never_replaces_a_plain_file_or_a_foreign_directory(tmp_path):
    data_file = tmp_path / "b.txt"
    data_file.write_text("a user's data")
    with pytest.raises(BadInput, match="not a directory"):
        check_output(data_file, stage="corpus", overwrite=True)
    foreign = make_dir(tmp_path / "model")
    with pytest.raises(BadInput, match="not an output of kocpt checkpoints resize"):
        check_output(foreign, stage="checkpoints resize", overwrite=True)
    other_stage = make_dir(tmp_path / "tok")
    write_marker(other_stage, "tokenizer merge")
    with pytest.raises(BadInput, match="an output of kocpt tokenizer merge, not of kocpt checkpoints resize"):
        check_output(other_stage, stage="checkpoints resize", overwrite=True)
    assert data_file.read_text() == "a user's data" and (foreign / "a.txt").exists()


def test_an_empty_folder_is_a_new_output(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", stage="corpus", overwrite=False)


def test_a_stage_may_recognise_its_file_outputs(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF....")
    check_output(gguf, stage="export gguf", overwrite=True, recognise=lambda p: p.read_bytes()[:4] == b"GGUF")
    with pytest.raises(BadInput, match="not an output of kocpt export gguf"):
        check_output(tmp_path, stage="export gguf", overwrite=True, recognise=lambda p: p.is_file())


# --------------------------------------------------------------------- rule 3: staged, then published

def test_staged_directory_publishes_with_marker_and_keeps_the_old_output_on_failure(tmp_path):
    target = tmp_path / "out"
    with staged_directory(target, stage="tokenizer merge", overwrite=False) as staging:
        (staging / "v").write_text("1")
    assert (target / "v").read_text() == "1" and read_marker(target)["stage"] == "tokenizer merge"
    with pytest.raises(RuntimeError):
        with staged_directory(target, stage="tokenizer merge", overwrite=True) as staging:
            (staging / "v").write_text("2")
            raise RuntimeError("killed")
    assert (target / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging left behind
    with staged_directory(target, stage="tokenizer merge", overwrite=True) as staging:
        (staging / "v").write_text("2")
    assert (target / "v").read_text() == "2"


def test_published_output_has_mkdir_permissions(tmp_path):
    with staged_directory(tmp_path / "out", stage="corpus", overwrite=False):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


# ------------------------------------------------------------------- rule 4: leftovers of killed runs

def test_rerun_removes_and_names_a_killed_runs_staging(tmp_path, capsys, dead_pid):
    target = tmp_path / "model"
    host_prefix = staging_prefix(target).rsplit("-", 2)[0]  # .model.tmp-HOST
    killed = make_dir(tmp_path / f"{host_prefix}-{dead_pid}-abc", ["big.safetensors"])
    legacy = make_dir(tmp_path / ".model.tmp-k2j3h4")  # an older kocpt's name, no owner
    gguf_tmp = tmp_path / f"{host_prefix}-{dead_pid + 1}-xyz"
    gguf_tmp.write_bytes(b"partial")
    with staged_directory(target, stage="checkpoints resize", overwrite=False, say=print):
        pass
    said = capsys.readouterr().out
    assert not killed.exists() and not legacy.exists() and not gguf_tmp.exists()
    assert "removed 3 temporary item(s)" in said and killed.name in said


def test_a_live_runs_staging_and_other_outputs_are_left_alone(tmp_path):
    target = tmp_path / "model"
    live = make_dir(tmp_path / (staging_prefix(target).rsplit("-", 2)[0] + f"-{os.getppid()}-abc"))
    other_host = make_dir(tmp_path / ".model.tmp-otherhost-1-abc")
    other_output = make_dir(tmp_path / ".modelx.tmp-k2j3h4")
    assert remove_stale_staging(target) == []
    assert live.exists() and other_host.exists() and other_output.exists()


def test_a_run_killed_between_publishs_renames_gets_its_old_output_back(tmp_path, capsys):
    target = tmp_path / "tok"
    trash = make_dir(tmp_path / ".tok.old-abc123")
    make_dir(trash / "tok", ["tokenizer.model"])
    remove_stale_staging(target, say=print)
    assert (target / "tokenizer.model").exists() and not trash.exists()
    assert "restored" in capsys.readouterr().out


def test_publish_directory_replaces_only_after_the_new_one_is_complete(tmp_path):
    old, new = make_dir(tmp_path / "out", ["old"]), make_dir(tmp_path / "new", ["new"])
    publish_directory(new, old)
    assert [p.name for p in old.iterdir()] == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert MARKER.startswith(".")  # hidden: the marker does not show in a user's listing
