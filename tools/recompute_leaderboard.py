#!/usr/bin/env python3
"""Recompute the protocol-2 columns of results/leaderboard.csv from the
committed per-item files, independently of steerbench's Rust code.

For every run whose items file has the protocol-2 header
(item,variant,metric,multiplier,value), this script reads the run's rows
and items, and recomputes:

  effect            mean of steered(m*) - unsteered(0) over the test items
  effect_ci_*       percentile bootstrap of that mean (1000 resamples)
  p_unsteered       two-sided sign-flip p-value (exact below 17 items,
                    otherwise 20000 random sign patterns)
  effect_vs_random  mean of steered(m*) - random(m*); p_random likewise
  p_holm            Holm's adjustment over every row's p_unsteered
  letter_bias, delta_letter_bias, anti_steerable_fraction,
  random_anti_steerable_fraction, perplexity_ratio, verdict
  min_detectable_effect  (1.959964 + 0.841621) * sd(differences) / sqrt(n)
  ood_effect_<shift>     mean of steered(m*) - unsteered(0) under each prompt
                         shift, and ood_mean_effect, their mean

Means, shares and ratios must match to 1e-6. Bootstrap intervals and
sampled p-values use another random generator than steerbench, so they are
compared within Monte Carlo tolerance (interval ends within 15 % of the
interval's width, p-values within 0.02 or 30 %). Exact p-values must match.
Exits 1 and lists the differences if any column disagrees.

Usage: python3 tools/recompute_leaderboard.py [results_dir]
Standard library only.
"""

import csv
import itertools
import math
import random
import sys
from pathlib import Path

ALPHA = 0.05
FLUENCY_BOUND = 1.2
MAX_ACCURACY_DROP = 0.05


def mean(xs):
    return sum(xs) / len(xs)


def sign_flip(d, draws=20000, seed=0):
    """Two-sided sign-flip p-value; exact for at most 16 differences."""
    n = len(d)
    observed = abs(sum(d))
    if n == 0 or all(x == 0 for x in d):
        return 1.0, True
    scale = sum(abs(x) for x in d)
    tol = 1e-12 * scale
    if n <= 16:
        hits = 0
        for signs in itertools.product((1, -1), repeat=n):
            if abs(sum(s * x for s, x in zip(signs, d))) >= observed - tol:
                hits += 1
        return hits / 2**n, True
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        s = sum(x if rng.random() < 0.5 else -x for x in d)
        if abs(s) >= observed - tol:
            hits += 1
    return (1 + hits) / (1 + draws), False


def bootstrap(d, resamples=1000, seed=0):
    rng = random.Random(seed)
    n = len(d)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    at = lambda q: means[min(round(q * (resamples - 1)), resamples - 1)]
    return at(0.025), at(0.975)


def holm(ps):
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: (ps[i], i))
    m = len(idx)
    out = [None] * len(ps)
    running = 0.0
    for k, i in enumerate(idx):
        running = max(running, min((m - k) * ps[i], 1.0))
        out[i] = running
    return out


def values(items, variant, metric, m):
    """Item values in item order for variant/metric at multiplier m (None: no multiplier)."""
    got = {}
    for it in items:
        if it["variant"] != variant or it["metric"] != metric:
            continue
        im = float(it["multiplier"]) if it["multiplier"] != "" else None
        if (im is None) != (m is None) or (m is not None and abs(im - m) > 1e-6 * max(1, abs(m))):
            continue
        got[int(it["item"])] = float(it["value"])
    return [got[i] for i in sorted(got)]


def recompute(run_csv):
    rows = list(csv.DictReader(open(run_csv)))
    items_path = run_csv.with_name(run_csv.name[: -len(".csv")] + ".items.csv")
    if not items_path.exists():
        return None
    with open(items_path) as f:
        header = f.readline().strip()
    if header != "item,variant,metric,multiplier,value":
        return None
    items = list(csv.DictReader(open(items_path)))
    find = lambda variant, metric: next((r for r in rows if r["variant"] == variant and r["metric"] == metric), None)
    effect_row = next(
        r for r in rows
        if r["variant"] == "steered" and r["split"] == "test" and r["metric"].startswith("effect_")
        and not r["metric"].startswith("effect_vs_random") and not r["metric"].startswith("effect_ood_")
    )
    metric = effect_row["metric"][len("effect_"):]
    choice = find("choice", "chosen")
    m = float(choice["multiplier"])
    steered = values(items, "steered", metric, m)
    unsteered = values(items, "unsteered", metric, 0.0)
    random_ = values(items, "random", metric, m)
    d = [a - b for a, b in zip(steered, unsteered)]
    dr = [a - b for a, b in zip(steered, random_)]
    p, exact = sign_flip(d)
    pr, exact_r = sign_flip(dr)
    out = {
        "model": choice["model"], "method": choice["method"], "suite": choice["suite"], "task": choice["task"],
        "effect": mean(d), "effect_vs_random": mean(dr),
        "p_unsteered": p, "p_random": pr, "exact": exact, "exact_random": exact_r,
        "ci": bootstrap(d), "_steered": steered,
        "metric": metric,
    }
    if len(d) > 1:
        sd = math.sqrt(sum((x - mean(d)) ** 2 for x in d) / (len(d) - 1))
        out["min_detectable_effect"] = (1.959964 + 0.841621) * sd / math.sqrt(len(d))
    shifts = ["system_towards", "system_away", "user_towards", "user_away", "multi_turn"]
    if values(items, "unsteered", f"logit_diff_ood_{shifts[0]}", 0.0):
        ood = []
        for shift in shifts:
            plain = values(items, "unsteered", f"logit_diff_ood_{shift}", 0.0)
            moved = values(items, "steered", f"logit_diff_ood_{shift}", m)
            out[f"ood_effect_{shift}"] = mean([a - b for a, b in zip(moved, plain)])
            ood.append(out[f"ood_effect_{shift}"])
        out["ood_mean_effect"] = mean(ood)
    bias0 = values(items, "unsteered", "letter_bias", 0.0)
    if bias0:
        out["letter_bias"] = mean(bias0)
        out["delta_letter_bias"] = mean(values(items, "steered", "letter_bias", m)) - mean(bias0)
    for variant, col in [("steered", "anti_steerable_fraction"), ("random", "random_anti_steerable_fraction")]:
        slopes = values(items, variant, "slope", None)
        if slopes:
            out[col] = sum(1 for s in slopes if s < 0) / len(slopes)
    ppl = {r["variant"]: float(r["value"]) for r in rows if r["suite"] == "perplexity" and r["metric"] == "perplexity"}
    if "steered" in ppl:
        out["perplexity_ratio"] = ppl["steered"] / ppl["unsteered"]
    deltas = [float(r["value"]) for r in rows if r["suite"] == "tinybench" and r["variant"] == "steered" and r["metric"] == "delta_accuracy_weighted"]
    out["delta_accuracy"] = mean(deltas) if deltas else None
    fc = find("choice", "fluency_constrained")
    out["fluency_constrained"] = fc is not None and float(fc["value"]) == 1.0
    return out


def verdict(r):
    if r["p_holm"] >= ALPHA or r["effect"] == 0:
        return "no detectable effect"
    if r["effect"] < 0:
        return "reverses"
    if r["p_random"] >= ALPHA or r["effect_vs_random"] <= 0:
        return "no better than random"
    damaged = (not r["fluency_constrained"]) or r.get("perplexity_ratio", 1.0) > FLUENCY_BOUND or (
        r["delta_accuracy"] is not None and r["delta_accuracy"] < -MAX_ACCURACY_DROP)
    return "steers only with damage" if damaged else "steers"


def main():
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    board = {(r["model"], r["method"], r["suite"], r["task"]): r for r in csv.DictReader(open(results / "leaderboard.csv"))}
    runs = [x for x in (recompute(p) for p in sorted((results / "runs").rglob("*.csv")) if not p.name.endswith(".items.csv")) if x]
    # Holm over every row with a p-value, in the leaderboard's family (all protocol-2 rows).
    adjusted = holm([r["p_unsteered"] for r in runs])
    prompting = {(r["model"], r["suite"], r["task"]): r for r in runs if r["method"] == "prompting"}
    problems = []
    for r, ph in zip(runs, adjusted):
        r["p_holm"] = ph
        key = (r["model"], r["method"], r["suite"], r["task"])
        row = board.get(key)
        if row is None:
            problems.append(f"{key}: not on the leaderboard")
            continue
        close = lambda col, v, tol=1e-6: row[col] != "" and abs(float(row[col]) - v) <= tol * max(1.0, abs(v))
        for col in ["effect", "effect_vs_random", "letter_bias", "delta_letter_bias", "anti_steerable_fraction",
                    "random_anti_steerable_fraction", "perplexity_ratio", "min_detectable_effect",
                    "ood_effect_system_towards", "ood_effect_system_away", "ood_effect_user_towards",
                    "ood_effect_user_away", "ood_effect_multi_turn", "ood_mean_effect"]:
            if col in r and not close(col, r[col]):
                problems.append(f"{key}: {col} {row[col]} vs recomputed {r[col]}")
        for col, exact in [("p_unsteered", r["exact"]), ("p_random", r["exact_random"])]:
            v, lb = r[col], float(row[col])
            ok = abs(lb - v) <= 1e-9 if exact else abs(lb - v) <= max(0.02, 0.3 * v)
            if not ok:
                problems.append(f"{key}: {col} {lb} vs recomputed {v}{'' if exact else ' (sampled)'}")
        lo, hi = r["ci"]
        width = max(hi - lo, 1e-9)
        for col, v in [("effect_ci_low", lo), ("effect_ci_high", hi)]:
            if abs(float(row[col]) - v) > 0.15 * width:
                problems.append(f"{key}: {col} {row[col]} vs recomputed {v:.6f} (bootstrap)")
        p = prompting.get((r["model"], r["suite"], r["task"]))
        if p and p is not r and row["effect_vs_prompting"] != "":
            # The column is the difference of the two effects, each against its own run's
            # unsteered values (which agree only to float rounding between scoring paths).
            dp = r["effect"] - p["effect"]
            if not close("effect_vs_prompting", dp):
                problems.append(f"{key}: effect_vs_prompting {row['effect_vs_prompting']} vs recomputed {dp}")
        want = verdict(r)
        if row["verdict"] != want:
            problems.append(f"{key}: verdict {row['verdict']!r} vs recomputed {want!r} (p_holm {ph:.4f})")
    for line in problems:
        print(line)
    print(f"{len(runs)} protocol-2 rows recomputed, {len(problems)} differences")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
