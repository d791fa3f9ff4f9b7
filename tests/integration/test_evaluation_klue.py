"""KLUE-STS / KLUE-NLI on files in KLUE's v1.1 release format, lm-eval registry tasks without their data,
and the chance level beside every score. No network: registry data that is not cached is skipped."""

from __future__ import annotations

import json

import pytest

from evaluation import BadInput
from evaluation.chance import uniform_macro_f1
from evaluation.lm_eval_tasks import load_task_config, run_tasks
from evaluation.run import main
from stagekit.paths import KO_HELDOUT

# As in klue-sts-v1.1_dev.json / klue-nli-v1.1_dev.json (made-up sentences; the release is not here).
KLUE_STS = [
    {"guid": "klue-sts-v1_dev_00000", "source": "airbnb-rtt", "sentence1": "무엇보다도 호스트분들이 너무 친절하셨습니다.",
     "sentence2": "무엇보다도, 호스트들은 매우 친절했습니다.", "labels": {"label": 4.9, "real-label": 4.857142857142857, "binary-label": 1}},
    {"guid": "klue-sts-v1_dev_00001", "source": "policy-sampled", "sentence1": "주요 관광지 모두 걸어서 이동가능합니다.",
     "sentence2": "위치는 피렌체 중심가까지 걸어서 이동 가능합니다.", "labels": {"label": 1.4, "real-label": 1.428571428571429, "binary-label": 0}},
    {"guid": "klue-sts-v1_dev_00002", "source": "paraKQC", "sentence1": "학생들의 공부 환경 조성을 위한 정책을 알려줘.",
     "sentence2": "학생들의 공부 환경을 위한 정책을 알려주세요.", "labels": {"label": 3.6, "real-label": 3.571428571428571, "binary-label": 1}},
    {"guid": "klue-sts-v1_dev_00003", "source": "airbnb-sampled", "sentence1": "방이 조금 작았어요.",
     "sentence2": "오늘 날씨가 맑습니다.", "labels": {"label": 0.0, "real-label": 0.0, "binary-label": 0}},
]
KLUE_NLI = [
    {"guid": "klue-nli-v1_dev_00000", "genre": "NEWS", "premise": "흡연자분들은 발코니가 있는 방이면 발코니에서 흡연이 가능합니다.",
     "hypothesis": "어떤 방에서도 흡연은 금지됩니다.", "gold_label": "contradiction",
     "author": "contradiction", "label2": "contradiction", "label3": "contradiction", "label4": "contradiction", "label5": "contradiction"},
    {"guid": "klue-nli-v1_dev_00001", "genre": "NEWS", "premise": "10명이 함께 사용하기 불편함없이 만족했다.",
     "hypothesis": "10명이 함께 사용하기 불편했다.", "gold_label": "contradiction"},
    {"guid": "klue-nli-v1_dev_00002", "genre": "WIKIPEDIA", "premise": "서울은 대한민국의 수도이다.",
     "hypothesis": "서울은 한국에 있다.", "gold_label": "entailment"},
    {"guid": "klue-nli-v1_dev_00003", "genre": "WIKITREE", "premise": "그는 아침에 커피를 마셨다.",
     "hypothesis": "그는 커피를 좋아한다.", "gold_label": "neutral"},
]


@pytest.fixture
def klue_files(tmp_path) -> dict[str, str]:
    files = {}
    for name, rows in (("klue_sts", KLUE_STS), ("klue_nli", KLUE_NLI)):
        path = tmp_path / f"{name.replace('_', '-')}-v1.1_dev.json"
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")  # one JSON list, as released
        files[name] = str(path)
    return files


def test_chance_of_macro_f1():
    assert uniform_macro_f1([0, 1] * 5, 2) == pytest.approx(0.5)
    assert uniform_macro_f1([0, 1, 2] * 4, 3) == pytest.approx(1 / 3)
    # Unbalanced: 90% class 0 -> F1_0 = 2*.9/(2*.9+1), F1_1 = 2*.1/(2*.1+1)
    assert uniform_macro_f1([0] * 9 + [1], 2) == pytest.approx((1.8 / 2.8 + 0.2 / 1.2) / 2)


def test_klue_release_files_are_read_as_released(klue_files):
    import datasets

    sts = load_task_config("klue_sts", klue_files["klue_sts"])
    docs = sts["process_docs"](datasets.load_dataset("json", **sts["dataset_kwargs"])["validation"])
    assert [d["label"] for d in docs] == [1, 0, 1, 0]
    assert [round(d["score"], 3) for d in docs] == [4.857, 1.429, 3.571, 0.0]
    nli = load_task_config("klue_nli", klue_files["klue_nli"])
    docs = nli["process_docs"](datasets.load_dataset("json", **nli["dataset_kwargs"])["validation"])
    assert [d["label"] for d in docs] == [2, 2, 0, 1]
    assert nli["doc_to_choice"](docs[2])[0] == "서울은 대한민국의 수도이다, 맞죠? 네, 서울은 한국에 있다."


@pytest.mark.slow
def test_klue_tasks_run_with_chance_levels(tiny, klue_files, no_network):
    model, tokenizer = tiny
    out = run_tasks(model, tokenizer, ["klue_sts", "klue_nli"], task_data=klue_files)
    assert out["skipped"] == {}
    assert out["n_samples"]["klue_sts"] == {"original": 4, "effective": 4}
    assert out["n_samples"]["klue_nli"] == {"original": 4, "effective": 4}
    for task in ("klue_sts", "klue_nli"):
        assert 0.0 <= out["results"][task]["acc"] <= 1.0 and 0.0 <= out["results"][task]["f1"] <= 1.0
    assert out["chance"]["klue_sts"] == {"acc": 0.5, "f1": 0.5, "spearman": 0.0, "pearson": 0.0}
    assert out["chance"]["klue_nli"]["acc"] == pytest.approx(1 / 3)
    # gold shares 1/4 entailment, 1/4 neutral, 1/2 contradiction
    assert out["chance"]["klue_nli"]["f1"] == pytest.approx(uniform_macro_f1([0, 1, 2, 2], 3))
    assert out["data_files"]["klue_sts"] == {"validation": klue_files["klue_sts"]}


def test_wrong_klue_labels_are_one_clear_error(tiny, tmp_path):
    model, tokenizer = tiny
    bad = tmp_path / "nli.json"
    bad.write_text(json.dumps([{**KLUE_NLI[0], "gold_label": "yes"}]), encoding="utf-8")
    with pytest.raises(BadInput, match=r"klue_nli: unknown gold_label 'yes'"):
        run_tasks(model, tokenizer, ["klue_nli"], task_data={"klue_nli": str(bad)})
    sts = tmp_path / "sts.json"
    sts.write_text(json.dumps([{"sentence1": "a", "sentence2": "b", "score": 3.0}]), encoding="utf-8")
    with pytest.raises(BadInput, match=r"klue_sts: the data file has no column\(s\) \['labels'\]"):
        run_tasks(model, tokenizer, ["klue_sts"], task_data={"klue_sts": str(sts)})


@pytest.mark.slow
def test_registry_tasks_without_data_are_skipped_and_the_rest_run(tmp_path, exported_model_dir, klue_files,
                                                                   no_network, capsys):
    out = tmp_path / "eval"
    rc = main(["--model", str(exported_model_dir), "--output", str(out), "--korean", str(KO_HELDOUT), "--english",
               "--max-documents", "2", "--tasks", "kobest_boolq", "belebele_kor_Hang", "klue_sts", "klue_nli",
               "--task-data", f"klue_sts={klue_files['klue_sts']}", "--task-data", f"klue_nli={klue_files['klue_nli']}",
               "--max-new-tokens", "0", "--no-progress"], prog="kocpt eval")
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    skipped = [line for line in stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 2, stdout
    assert any("task kobest_boolq skipped: cannot load its data" in line for line in skipped)
    assert any("task belebele_kor_Hang skipped: cannot load its data" in line for line in skipped)
    assert "klue_sts: acc" in stdout and "(chance 0.5000)" in stdout
    result = json.loads((out / "eval.json").read_text())
    model = result["models"][0]
    assert set(model["tasks"]) == {"klue_sts", "klue_nli"} and set(model["tasks_skipped"]) == {"kobest_boolq", "belebele_kor_Hang"}
    assert sum("skipped" in note for note in result["notes"]) == 2
    markdown = (out / "eval.md").read_text()
    assert "| *chance* | 0.000 | 0.500 | 0.333 | " in markdown, markdown  # pearson, f1 | acc, ...
    assert "kobest_boolq skipped" in markdown
