"""The Korean lm-eval tasks load from local files and run on a tiny model, with no network at all."""

from __future__ import annotations

import math

import pytest

from evaluation import BadInput
from evaluation.lm_eval_tasks import DEFAULT_TASKS, TASKS_DIR, load_task_config, run_tasks
from stagekit.paths import REPO
from stagekit.paths import KO_EVAL

ROWS = {"korsts": 1379, "kornli": 5010, "nsmc": 5000}  # documents in the default (test) files


@pytest.mark.slow
def test_every_task_runs_on_a_tiny_model_offline(tiny, no_network):
    model, tokenizer = tiny
    out = run_tasks(model, tokenizer, DEFAULT_TASKS, limit=6, batch_size=8)
    assert set(out["results"]) == set(DEFAULT_TASKS)
    for task in DEFAULT_TASKS:
        assert out["n_samples"][task] == {"original": ROWS[task], "effective": 6}
        metrics = out["results"][task]
        for name in ("acc", "f1"):
            assert 0.0 <= metrics[name] <= 1.0, (task, name, metrics)
        assert 0.0 < metrics["acc_stderr"] < 1.0
        assert out["data_files"][task]["test"].startswith(str(KO_EVAL.resolve()))
    correlation = out["results"]["korsts"]["spearman"]
    assert correlation is None or -1.0 <= correlation <= 1.0  # None: undefined on constant input


def test_task_yamls_load_with_lm_evals_own_task_manager(monkeypatch, no_network):
    """What `lm_eval --include_path evaluation/tasks --tasks korsts` does, from the repository root."""
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(REPO)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert {"korsts", "kornli", "nsmc", "kocpt_korean"} <= set(manager.all_tasks)
    tasks = manager.load(["korsts", "kornli", "nsmc"])["tasks"]
    for name, task in tasks.items():
        docs = task.test_docs()
        assert len(docs) == ROWS[name]
        doc = docs[0]
        assert isinstance(task.doc_to_target(doc), int)
        choices = task.doc_to_choice(doc)
        assert len(choices) == (3 if name == "kornli" else 2)
    korsts = tasks["korsts"].test_docs()
    assert all(0.0 <= d["score"] <= 5.0 and d["label"] == int(d["score"] >= 3.0) for d in korsts)
    kornli = tasks["kornli"]
    assert sorted({d["label"] for d in kornli.test_docs()}) == [0, 1, 2]
    first = kornli.test_docs()[0]
    assert kornli.doc_to_choice(first)[0].endswith(f"맞죠? 네, {first['sentence2']}")
    nsmc = tasks["nsmc"].test_docs()
    assert sum(d["label"] for d in nsmc) == 2500 and all(isinstance(d["document"], str) for d in nsmc)


@pytest.mark.slow
def test_tasks_point_at_a_users_own_copies(tiny, tmp_path, no_network):
    model, tokenizer = tiny
    # NSMC's own ratings_test.txt layout, with the awkward cases: bare quotes, "NA", a numeric review.
    nsmc = tmp_path / "ratings_test.txt"
    nsmc.write_text('id\tdocument\tlabel\n1\t"정말 재밌다\t1\n2\tNA\t0\n3\t10\t1\n4\t최악의 영화\t0\n5\t굿\t1\n',
                    encoding="utf-8")
    # XNLI-style data as exported from the hub: premise/hypothesis and integer labels.
    xnli = tmp_path / "xnli_ko.tsv"
    xnli.write_text("premise\thypothesis\tlabel\n그는 집에 갔다.\t그는 집에 있다.\t0\n그는 집에 갔다.\t그는 학교에 있다.\t2\n"
                    "비가 온다.\t우산이 필요하다.\t1\n", encoding="utf-8")
    out = run_tasks(model, tokenizer, ["nsmc", "kornli"], task_data={"nsmc": str(nsmc), "kornli": str(xnli)})
    assert out["n_samples"]["nsmc"] == {"original": 5, "effective": 5}
    assert out["n_samples"]["kornli"] == {"original": 3, "effective": 3}
    assert out["data_files"]["nsmc"] == {"test": str(nsmc)}
    config = load_task_config("nsmc", nsmc)
    docs = config["process_docs"](__import__("datasets").load_dataset("csv", **config["dataset_kwargs"])["test"])
    assert [d["document"] for d in docs] == ['"정말 재밌다', "NA", "10", "최악의 영화", "굿"]


def test_bad_task_data_is_one_clear_error(tiny, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(BadInput, match=r"data file .*missing.tsv not found"):
        load_task_config("korsts", tmp_path / "missing.tsv")
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("text\tlabel\n좋다\t1\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"nsmc: the data file has no column\(s\) \['document'\]"):
        run_tasks(model, tokenizer, ["nsmc"], task_data={"nsmc": str(wrong)})
    with pytest.raises(BadInput, match="not being run"):
        run_tasks(model, tokenizer, ["nsmc"], task_data={"korsts": str(wrong)})


def test_metrics_helpers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ko_task_utils_test", TASKS_DIR / "ko_task_utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    assert utils.macro_f1([(0, 0), (1, 1), (1, 0), (0, 0)]) == pytest.approx((0.8 + 2 / 3) / 2)
    assert utils.spearman([(1.0, 0.1), (2.0, 0.5), (3.0, 0.4), (4.0, 2.0)]) == pytest.approx(0.8)
    assert math.isnan(utils.spearman([(1.0, 0.1), (2.0, 0.1)]))
    result = utils.korsts_results({"label": 1, "score": 4.2}, [(-3.0, False), (-1.0, True)])
    assert result == {"acc": 1.0, "f1": (1, 1), "spearman": (4.2, 2.0), "pearson": (4.2, 2.0)}


KOBEST_ROWS = {
    "boolq": [{"paragraph": "서울은 대한민국의 수도이다.", "question": "서울은 수도인가?", "label": 1},
              {"paragraph": "고래는 포유류이다.", "question": "고래는 어류인가?", "label": 0}],
    "copa": [{"premise": "길이 젖었다.", "question": "원인", "alternative_1": "비가 왔다.", "alternative_2": "해가 떴다.", "label": 0},
             {"premise": "배가 고팠다.", "question": "결과", "alternative_1": "잠을 잤다.", "alternative_2": "밥을 먹었다.", "label": 1}],
    "sentineg": [{"sentence": "별로 재미없지 않았다.", "label": 1}, {"sentence": "정말 지루했다.", "label": 0}],
    "wic": [{"word": "배", "context_1": "배가 아프다.", "context_2": "배를 타고 갔다.", "label": 0},
            {"word": "눈", "context_1": "눈이 내린다.", "context_2": "눈이 쌓였다.", "label": 1}],
    "hellaswag": [{"context": "그는 라면을 끓였다.", "ending_1": "그리고 먹었다.", "ending_2": "그리고 날았다.",
                   "ending_3": "그리고 헤엄쳤다.", "ending_4": "그리고 노래했다.", "label": 0}],
}


@pytest.mark.slow
def test_kobest_tasks_run_on_local_copies(tiny, tmp_path, no_network):
    """KoBEST in skt/kobest_v1's columns, exported to JSON Lines (made-up rows: the real sets are not here)."""
    import json

    model, tokenizer = tiny
    data = {}
    for name, rows in KOBEST_ROWS.items():
        path = tmp_path / f"{name}_test.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        data[f"kobest_{name}_local"] = str(path)
    out = run_tasks(model, tokenizer, list(data), task_data=data)
    for task, path in data.items():
        rows = KOBEST_ROWS[task.split("_")[1]]
        assert out["n_samples"][task] == {"original": len(rows), "effective": len(rows)}
        assert 0.0 <= out["results"][task]["acc"] <= 1.0
    assert 0.0 <= out["results"]["kobest_hellaswag_local"]["acc_norm"] <= 1.0
    copa = load_task_config("kobest_copa_local", data["kobest_copa_local"])
    doc = copa["process_docs"](__import__("datasets").load_dataset("json", **copa["dataset_kwargs"])["test"])[0]
    assert copa["doc_to_text"](doc) == "길이 젖었다. 왜냐하면" and copa["doc_to_choice"](doc) == ["비가 왔다.", "해가 떴다."]
