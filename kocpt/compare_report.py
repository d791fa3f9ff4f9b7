"""The report of `kocpt compare`: compare.json (its `arms`), compare.md and plots, and the verdict line.

Three axes, as the question has three: Korean and English bits/char against training FLOPs (what the
budget buys), against Korean characters seen (what the data buys: an expanded tokenizer packs more Korean
into a token), and the inference FLOPs per Korean character (one forward pass per token x tokens per
character of the held-out Korean: what serving costs). Gaps between arms are paired differences on the
same documents at the same FLOPs point (evaluation/bpc.py), with their bootstrap standard errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from stagekit.outputs import write_file_atomic

TREND_POINTS = 3  # the gap's slope is fitted over the last this many points (step 0 excluded)


def build_report(section, reference: str, budget: float, shapes: dict, plan: dict, scores: dict, held_out: list,
                 start_flops: dict | None = None) -> dict:
    """`start_flops`: per arm, FLOPs spent making its starting rows (a calibrated LM head, distilled input rows), reported beside
    the training budget, not taken from it."""
    from evaluation.bpc import paired_difference

    arms = []
    for arm in section.arms:
        shape, steps = shapes[arm.name], [0, *plan[arm.name]]
        points = []
        for step in steps:
            tokens = step * shape.tokens_per_step
            entry = {"step": step, "tokens": tokens, "korean_characters": round(tokens * shape.characters_per_token),
                     "training_flops": tokens * shape.flops_per_token}
            for language, result in scores[arm.name][step].items():
                entry[language] = {"bits_per_char": result["bits_per_char"], "se": result["bits_per_char_se"],
                                   "tokens_per_char": result["tokens_per_char"], "documents": result["documents"]}
            points.append(entry)
        korean_tokens_per_char = scores[arm.name][0]["korean"]["tokens_per_char"]
        arms.append({"name": arm.name, "expanded": arm.expanded, "tokenizer": arm.tokenizer, "init": arm.init,
                     "lm_head": arm.lm_head, "set": arm.set, "shape": shape.to_dict(), "points": points,
                     "start_flops": (start_flops or {}).get(arm.name, 0.0),
                     "inference_flops_per_korean_char": shape.forward_flops_per_token * korean_tokens_per_char})
    by_name = {arm["name"]: arm for arm in arms}
    base = by_name[reference]
    for arm in arms:
        arm["inference_cost_ratio"] = arm["inference_flops_per_korean_char"] / base["inference_flops_per_korean_char"]
        if arm is base:
            continue
        arm["gaps"] = []
        for index, (step, ref_step) in enumerate(zip([0, *plan[arm["name"]]], [0, *plan[reference]])):
            gap = {"point": index, "step": step, "reference_step": ref_step,
                   "reference_tokens": base["points"][index]["tokens"]}
            for language in scores[reference][ref_step]:
                value, se = paired_difference(scores[arm["name"]][step][language], scores[reference][ref_step][language])
                gap[language] = {"gap": value, "se": se}
            arm["gaps"].append(gap)
        arm["korean_gap_trend_per_decade"] = gap_trend(arm["gaps"])
    report = {
        "reference": reference, "budget_training_flops": budget, "point_shares": section.point_fractions(),
        "held_out": held_out, "arms": arms,
    }
    report["verdict"] = verdict(report)
    return report


def gap_trend(gaps: list[dict]) -> float | None:
    """Least-squares slope of the Korean gap against log10(reference tokens) over the last points: bits/char per
    tenfold tokens (negative: the gap closes with training). None with fewer than 2 trained points."""
    trained = [gap for gap in gaps if gap["reference_tokens"] > 0][-TREND_POINTS:]
    if len(trained) < 2:
        return None
    xs = [math.log10(gap["reference_tokens"]) for gap in trained]
    ys = [gap["korean"]["gap"] for gap in trained]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def verdict(report: dict) -> str:
    """One line: the first expanded arm (else the first other arm) against the reference at the end."""
    others = [arm for arm in report["arms"] if arm["name"] != report["reference"]]
    arm = next((arm for arm in others if arm["expanded"]), others[0])
    end = arm["gaps"][-1]["korean"]
    side = "worse" if end["gap"] > 0 else "better"
    if abs(end["gap"]) < 2 * end["se"]:
        side += ", within 2 standard errors"
    trend = arm["korean_gap_trend_per_decade"]
    count = min(TREND_POINTS, len(arm["gaps"]) - 1)
    trend_text = ("no trend (one point; raise compare.points)" if trend is None else
                  f"trend {trend:+.3f} per tenfold tokens over the last {count} points "
                  f"({'closing' if trend * end['gap'] < 0 else 'widening'})")
    return (f"Verdict: {arm['name']} vs {report['reference']} at {report['budget_training_flops']:.3g} training FLOPs each: "
            f"Korean bits/char gap {end['gap']:+.3f} ± {end['se']:.3f} ({side}); {trend_text}; "
            f"inference {arm['inference_cost_ratio']:.2f}x the FLOPs per Korean character.")


def markdown(report: dict) -> str:
    lines = ["# Should I expand? An equal-FLOPs comparison (`kocpt compare`)", "",
             f"Every arm trained for {report['budget_training_flops']:.3g} training FLOPs, scored at the same FLOPs "
             f"(shares {', '.join(f'{share:g}' for share in report['point_shares'])} and step 0). "
             f"Gaps are paired differences against **{report['reference']}** on the same documents.", ""]
    for item in report["held_out"]:
        lines.append(f"- held-out: {item['documents']} whole documents ({item['characters']:,} characters) of "
                     f"{item['file']}; {item['left_out_too_long']} left out as longer than the context")
    lines += ["", "| arm | step | tokens | Korean chars seen | training FLOPs | Korean bits/char | English bits/char |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for arm in report["arms"]:
        for point in arm["points"]:
            lines.append(f"| {arm['name']} | {point['step']} | {point['tokens']:,} | {point['korean_characters']:,} | "
                         f"{point['training_flops']:.3g} | {figure(point.get('korean'))} | {figure(point.get('english'))} |")
    lines += ["", "| arm | point | step | Korean gap | English gap |", "|---|---:|---:|---:|---:|"]
    for arm in report["arms"]:
        for gap in arm.get("gaps", []):
            lines.append(f"| {arm['name']} | {gap['point']} | {gap['step']} | {difference(gap.get('korean'))} | "
                         f"{difference(gap.get('english'))} |")
    lines += ["", "| arm | MFLOP/token (training) | Korean tokens/char | inference MFLOP per Korean char | ratio |",
              "|---|---:|---:|---:|---:|"]
    for arm in report["arms"]:
        tokens_per_char = arm["points"][0]["korean"]["tokens_per_char"]
        lines.append(f"| {arm['name']} | {arm['shape']['flops_per_token'] / 1e6:,.3f} | {tokens_per_char:.3f} | "
                     f"{arm['inference_flops_per_korean_char'] / 1e6:,.3f} | {arm['inference_cost_ratio']:.2f}x |")
    for arm in report["arms"]:
        if arm.get("start_flops"):
            lines.append(f"\n{arm['name']}'s starting rows cost {arm['start_flops']:.3g} FLOPs (the LM-head calibration's "
                         "forward pass, the input-row distillation: "
                         f"{arm['start_flops'] / report['budget_training_flops']:.1%} of the training budget, not taken from it).")
    lines += ["", report["verdict"], "", "![bits per character](bits_per_char.png)", "",
              "![inference cost](inference_cost.png)", ""]
    return "\n".join(lines)


def figure(value: dict | None) -> str:
    return "—" if value is None else f"{value['bits_per_char']:.3f} ± {value['se']:.3f}"


def difference(value: dict | None) -> str:
    return "—" if value is None else f"{value['gap']:+.3f} ± {value['se']:.2g}"  # a paired SE may be tiny


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    languages = [language for language in ("korean", "english") if language in report["arms"][0]["points"][0]]
    figure_, axes = plt.subplots(len(languages), 2, figsize=(11, 4 * len(languages)), squeeze=False)
    for row, language in enumerate(languages):
        for column, (key, label) in enumerate((("training_flops", "training FLOPs"),
                                               ("korean_characters", "Korean characters seen"))):
            axis = axes[row][column]
            for arm in report["arms"]:
                trained = [point for point in arm["points"] if point[key] > 0]
                axis.errorbar([point[key] for point in trained], [point[language]["bits_per_char"] for point in trained],
                              yerr=[point[language]["se"] for point in trained], marker="o", capsize=3, label=arm["name"])
                start = arm["points"][0][language]["bits_per_char"]
                axis.axhline(start, linestyle=":", linewidth=0.8, color=axis.lines[-1].get_color())
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on a short range
            axis.set_xlabel(label + " (dotted: step 0)")
            axis.set_ylabel(f"{language} bits/char")
            axis.legend()
    save(figure_, out / "bits_per_char.png")

    figure_, axis = plt.subplots(figsize=(6, 4))
    for arm in report["arms"]:
        end = arm["points"][-1]["korean"]
        axis.errorbar([arm["inference_flops_per_korean_char"]], [end["bits_per_char"]], yerr=[end["se"]], marker="o",
                      capsize=3, label=arm["name"])
    axis.set_xlabel("inference FLOPs per Korean character")
    axis.set_ylabel("Korean bits/char at the end")
    axis.legend()
    save(figure_, out / "inference_cost.png")


def save(figure_, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    figure_.tight_layout()
    buffer = io.BytesIO()
    figure_.savefig(buffer, format="png", dpi=90)
    plt.close(figure_)
    write_file_atomic(path, buffer.getvalue())


def write_report(out: Path, report: dict) -> None:
    write_file_atomic(out / "compare.json", (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    write_file_atomic(out / "compare.md", markdown(report).encode())
    plot(report, out)
