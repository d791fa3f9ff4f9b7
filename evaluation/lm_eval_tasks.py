"""Run the Korean lm-eval-harness tasks in `evaluation/tasks/` on a model that is already in memory.

Tasks: korsts, kornli, nsmc (default data: ../shared/data/ko-eval), the five KoBEST tasks
`kobest_{boolq,copa,sentineg,wic,hellaswag}_local` on a local JSON Lines copy of skt/kobest_v1, and
`klue_sts` / `klue_nli` on KLUE's v1.1 release files (`klue-{sts,nli}-v1.1_dev.json`). Any task in
lm-eval's own registry runs too (`kobest_boolq`, `kmmlu`, `haerae`, `belebele_kor_Hang`, ...); one whose
data cannot be loaded (no network and no cached copy) is skipped with a line saying why, and the rest run.
Each task's chance level (uniform guessing on the same documents, `evaluation/chance.py`) comes with it.
The YAMLs are ordinary lm-eval task configs (`lm_eval --include_path evaluation/tasks --tasks korsts`
works from the repository root). Their data files default to `../shared/data/ko-eval`; here each
task's `data_files` can point at a user's own copy (`--task-data nsmc=ratings_test.txt`). Other
lm-eval tasks (e.g. the built-in `kobest_boolq`) run too when their data is available offline;
`--task-data kobest_boolq=DIR` points such a task's `dataset_path` at a local copy of its dataset.

Nothing is downloaded: the tasks read local files and `HF_HUB_OFFLINE`/`HF_DATASETS_OFFLINE` are set
before lm-eval is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
from pathlib import Path

import yaml

from evaluation import BadInput

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
DEFAULT_TASKS = ("korsts", "kornli", "nsmc")
# The figures that go in the report for each task (lm-eval reports them as "<metric>,none").
HEADLINE_METRICS = {"korsts": ("spearman", "acc"), "klue_sts": ("pearson", "f1"), "kobest_hellaswag_local": ("acc", "acc_norm")}


def go_offline() -> None:
    """No hub access from lm-eval, datasets or transformers (set before they are imported)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "1"


@contextlib.contextmanager
def progress_bars(enabled: bool = True):
    """With `enabled` False, no progress bar from lm-eval or datasets while inside: datasets' own switch,
    and tqdm forced off where lm-eval takes it from (the name `tqdm` in its loaded modules, and the tqdm
    package itself for its function-local imports, e.g. the bootstrap of standard errors). Restored after."""
    if enabled:
        yield
        return
    import datasets
    import tqdm as tqdm_package

    original = tqdm_package.tqdm

    class Quiet(original):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    patched = [(tqdm_package, original)]
    for name, module in list(sys.modules.items()):
        found = getattr(module, "tqdm", None) if name.startswith("lm_eval") and module is not None else None
        if isinstance(found, type) and issubclass(found, original):
            patched.append((module, found))
    datasets_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    for module, _ in patched:
        module.tqdm = Quiet
    try:
        yield
    finally:
        for module, value in patched:
            module.tqdm = value
        if datasets_bars:
            datasets.enable_progress_bars()


def split_task_names(items) -> list[str]:
    """Task names as lm-eval takes them: comma-separated (`klue_sts,klue_nli`), repeated or space-separated;
    blanks dropped, order and first occurrence kept."""
    names = [name.strip() for item in items or () for name in str(item).split(",")]
    return list(dict.fromkeys(name for name in names if name))


def local_task_names() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def builtin_task_names() -> list[str]:
    """Every task lm-eval itself ships (indexing them all takes tens of seconds)."""
    go_offline()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=True).all_tasks


def _task_functions():
    """The module the YAMLs name in `!function ko_task_utils.NAME`, loaded from its file."""
    path = TASKS_DIR / "ko_task_utils.py"
    spec = importlib.util.spec_from_file_location("kocpt_ko_task_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_task_config(name: str, data_file: str | Path | None = None) -> dict:
    """One of our YAMLs as an lm-eval config dict, with `data_files` made absolute (or replaced)."""
    path = TASKS_DIR / f"{name}.yaml"
    functions = _task_functions()

    class Loader(yaml.SafeLoader):
        pass

    def function(loader, node):
        qualified = loader.construct_scalar(node)
        module, _, attribute = qualified.rpartition(".")
        if module != "ko_task_utils" or not hasattr(functions, attribute):
            raise BadInput(f"{path}: unknown !function {qualified}")
        return getattr(functions, attribute)

    Loader.add_constructor("!function", function)
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 (our own file)
    config.pop("tag", None)
    kwargs = dict(config.get("dataset_kwargs") or {})
    files = dict(kwargs.get("data_files") or {})
    if data_file is not None:
        files = {split: str(Path(data_file).resolve()) for split in files}
    else:
        files = {split: str(Path(f).resolve()) for split, f in files.items()}
    for split, file in files.items():
        if not Path(file).is_file():
            raise BadInput(f"task {name}: data file {file} not found (point it elsewhere with --task-data {name}=FILE)")
    kwargs["data_files"] = files
    config["dataset_kwargs"] = kwargs
    return config


def task_specs(tasks: list[str], task_data: dict[str, str] | None = None) -> tuple[list, bool]:
    """lm-eval task specs (config dicts for ours, names for lm-eval's) and whether lm-eval's own are needed."""
    task_data = dict(task_data or {})
    unknown_data = set(task_data) - set(tasks)
    if unknown_data:
        raise BadInput(f"--task-data names task(s) not being run: {sorted(unknown_data)}")
    ours = set(local_task_names())
    specs: list = []
    builtin = False
    for name in tasks:
        if name in ours:
            specs.append(load_task_config(name, task_data.get(name)))
        else:
            builtin = True
            specs.append({"__builtin__": name, "dataset_path": task_data.get(name)})
    return specs, builtin


def run_tasks(
    model,
    tokenizer,
    tasks: list[str] | tuple[str, ...] = DEFAULT_TASKS,
    *,
    task_data: dict[str, str] | None = None,
    limit: int | float | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    progress: bool = True,
) -> dict:
    """Zero-shot lm-eval on `model` (a transformers PreTrainedModel) -> {"results", "n_samples", "versions", ...}.
    `progress` False: no progress bars (lm-eval's, datasets')."""
    go_offline()
    specs, need_builtin = task_specs(split_task_names(tasks), task_data)
    import lm_eval.api.task  # noqa: F401 - loaded before progress_bars() quiets the tqdm they hold
    import lm_eval.evaluator  # noqa: F401
    import lm_eval.models.huggingface  # noqa: F401

    with progress_bars(progress):
        return _run_tasks(model, tokenizer, specs, need_builtin, limit, batch_size, max_length)


def _run_tasks(model, tokenizer, specs, need_builtin, limit, batch_size, max_length) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # lm-eval warns about every in-memory model and zero-shot override; our own lines say what runs
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=need_builtin)
    resolved = []
    for spec in specs:
        if "__builtin__" not in spec:
            resolved.append(spec)
            continue
        name = spec["__builtin__"]
        if name not in manager.all_tasks:
            raise BadInput(f"unknown lm-eval task {name!r} (ours: {', '.join(local_task_names())})")
        if spec["dataset_path"]:
            raise BadInput(f"--task-data for lm-eval's own task {name!r} is not supported; copy its YAML into a "
                           "folder, set dataset_path there and run it with lm_eval --include_path")
        resolved.append(name)

    built, skipped, chance = load_tasks(manager, resolved, limit)
    output: dict = {"results": {}}
    if built:
        device = next(model.parameters()).device
        # The tokenizer's own special-token rule applies (Llama: BOS first), as in lm-eval's defaults.
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device), max_length=max_length)
        try:
            output = lm_eval.simple_evaluate(model=lm, tasks=built, task_manager=manager, limit=limit,
                                             bootstrap_iters=1000, log_samples=False, num_fewshot=0)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            # process_docs raises ValueError naming the task and the missing column; keep it to one line
            raise BadInput(f"lm-eval: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return {
        "results": {task: _clean(metrics) for task, metrics in output["results"].items()},
        "chance": {task: levels for task, levels in chance.items() if task in output["results"]},
        "skipped": skipped,
        "n_samples": output.get("n-samples", {}),
        "versions": output.get("versions", {}),
        "limit": limit,
        "data_files": {s["task"]: s["dataset_kwargs"]["data_files"] for s in resolved if isinstance(s, dict)},
        "lm_eval_version": output.get("lm_eval_version"),
    }


def load_tasks(manager, specs: list, limit) -> tuple[list, dict[str, str], dict[str, dict]]:
    """Build each task (its data loaded) on its own: (Task/Group objects, {skipped task: why}, chance levels).

    A registry task whose data cannot be loaded (no network, no cached copy) is skipped with its reason so
    the others still run; our own tasks read files the user named, so their errors stay errors.
    """
    from evaluation.chance import chance_levels

    built, skipped, chance = [], {}, {}
    for spec in specs:
        name = spec if isinstance(spec, str) else spec["task"]
        try:
            loaded = manager.load([spec])
        except Exception as exc:  # datasets raises ConnectionError, FileNotFoundError, ValueError, ... by source
            if not isinstance(spec, str):
                raise BadInput(f"lm-eval: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            skipped[name] = f"cannot load its data ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})"
            continue
        groups = loaded.get("groups", {})
        built += [groups[name]] if name in groups else list(loaded["tasks"].values())
        chance.update(chance_levels(loaded, limit))
    return built, skipped, chance


def _clean(metrics: dict) -> dict:
    """{"acc,none": 0.5, "acc_stderr,none": "N/A", "alias": ...} -> {"acc": 0.5, "acc_stderr": None}."""
    out = {}
    for key, value in metrics.items():
        if key in ("alias", "name", "sample_len"):
            continue
        metric = key.split(",")[0]
        if isinstance(value, (int, float)):
            out[metric] = None if isinstance(value, float) and math.isnan(value) else value
        elif value == "N/A":
            out[metric] = None
    return out


def headline(task: str, metrics: dict) -> dict:
    """The one or two figures per task that go in the Markdown table."""
    names = HEADLINE_METRICS.get(task, ("acc", "f1"))
    return {name: metrics.get(name) for name in names if name in metrics}
