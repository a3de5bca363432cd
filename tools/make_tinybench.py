"""Extracts the tinyBenchmarks anchor items of MMLU, ARC-Challenge, WinoGrande,
TruthfulQA (MC1) and GSM8K.

Reads ../shared/data/tinybenchmarks/anchors.json (anchor indices and weights
per benchmark, converted from tinyBenchmarks' anchor.pickle) and the full test
sets in nutcracker-db format, and writes suites/tinybench/<bench>/anchors.jsonl:
one line per anchor with its index in the full set, its weight, and the item.

The full sets are ordered as tinyBenchmarks assumes (the Open LLM Leaderboard
order): MMLU is the 57 subjects in alphabetical order (subject names with
underscores), each subject's test items in file order; ARC-Challenge and
WinoGrande are their files in order; TruthfulQA is the v0 `mc_task.json` (the
order of the Hugging Face validation split), with the MC1 targets as choices in
file order (scored by likelihood, so the order does not matter); GSM8K is the
test file in order, with the number after `####` as the answer.

Usage: python tools/make_tinybench.py [--data ../shared/data] [--out suites/tinybench]
"""

import argparse
import json
import os


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="suites/tinybench")
    args = ap.parse_args()
    root = os.path.join(args.data, "tinybenchmarks")
    with open(os.path.join(root, "anchors.json"), encoding="utf-8") as f:
        anchors = json.load(f)
    db = os.path.join(root, "nutcracker", "db")

    mmlu = []
    subjects = sorted(
        (d[len("mmlu-"):].replace("-", "_"), d) for d in os.listdir(db) if d.startswith("mmlu-")
    )
    assert len(subjects) == 57, len(subjects)
    for subject, folder in subjects:
        for item in read_jsonl(os.path.join(db, folder, "test.json")):
            mmlu.append((subject, item))
    assert len(mmlu) == 14042, len(mmlu)
    arc = [("", it) for it in read_jsonl(os.path.join(db, "arc-challenge", "test.json"))]
    wino = [("", it) for it in read_jsonl(os.path.join(db, "winogrande", "test.json"))]

    for bench, key, items in [("mmlu", "mmlu", mmlu), ("arc", "arc", arc), ("winogrande", "winogrande", wino)]:
        points = anchors["anchor_points"][key]
        weights = anchors["anchor_weights"][key]
        out_dir = os.path.join(args.out, bench)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "anchors.jsonl"), "w", encoding="utf-8") as f:
            for k, (index, weight) in enumerate(zip(points, weights)):
                subject, item = items[index]
                assert len(item["correct_options_idx"]) == 1
                row = {
                    "anchor": k,
                    "index": index,
                    "weight": weight,
                    "subject": subject,
                    "question": item["centerpiece"],
                    "choices": item["options"],
                    "answer": item["correct_options_idx"][0],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(bench, len(points), "anchors, weights sum to", sum(weights))

    with open(os.path.join(root, "truthfulqa", "data", "v0", "mc_task.json"), encoding="utf-8") as f:
        truthful = json.load(f)
    assert len(truthful) == 817, len(truthful)
    gsm = read_jsonl(os.path.join(root, "gsm8k", "test.jsonl"))
    assert len(gsm) == 1319, len(gsm)

    def truthful_row(item):
        targets = list(item["mc1_targets"].items())
        right = [k for k, (_, v) in enumerate(targets) if v == 1]
        assert len(right) == 1
        return {"question": item["question"], "choices": [t for t, _ in targets], "answer": right[0]}

    def gsm_row(item):
        final = item["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        float(final)
        return {"question": item["question"], "answer": final}

    for bench, key, items, convert in [
        ("truthfulqa", "harness_truthfulqa_mc_0", truthful, truthful_row),
        ("gsm8k", "gsm8k", gsm, gsm_row),
    ]:
        points = anchors["anchor_points"][key]
        weights = anchors["anchor_weights"][key]
        out_dir = os.path.join(args.out, bench)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "anchors.jsonl"), "w", encoding="utf-8") as f:
            for k, (index, weight) in enumerate(zip(points, weights)):
                row = {"anchor": k, "index": index, "weight": weight, "subject": ""}
                row.update(convert(items[index]))
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(bench, len(points), "anchors, weights sum to", sum(weights))


if __name__ == "__main__":
    main()
