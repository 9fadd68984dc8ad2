"""Budget targets: the plan fits FLOPs / parameter budgets, counted as summary.json counts them."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.pruning.stats import flops, param_count


def vgg():
    keras.utils.set_random_seed(0)
    return tfprune.models.build("vgg13", width_multiplier=0.25, num_classes=10)


@pytest.mark.parametrize("kind, measure", [("flops", flops), ("params", param_count)])
@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_the_plan_lands_within_two_percent_under_the_budget(kind, measure, fraction):
    model = vgg()
    scores = tfprune.score(model, "magnitude")
    budget = fraction * measure(model)
    plan = tfprune.make_plan(model, scores, {kind: budget})
    after = measure(model, plan)
    assert 0.98 * budget <= after <= budget, (after, budget)
    # the slimmed model really has that size (independent count on the rebuilt model)
    slimmed = tfprune.slim(model, plan)
    if kind == "flops":
        assert flops(slimmed) == after
    else:
        assert slimmed.count_params() == after


def test_cheap_channels_go_first_per_unit_of_cost():
    """With equal scores everywhere, a FLOPs budget prunes where FLOPs are (the early,
    high-resolution layers) more than a parameter budget does."""
    model = vgg()
    rng = np.random.default_rng(0)
    scores = {name: 1 + 0.01 * rng.random(values.size)
              for name, values in tfprune.score(model, "magnitude").items()}
    by_flops = tfprune.make_plan(model, scores, {"flops": 0.6 * flops(model)})
    by_params = tfprune.make_plan(model, scores, {"params": 0.6 * param_count(model)})

    def kept_fraction(plan, blocks):
        rows = [v for k, v in plan.kept_per_layer().items() if k.split("_")[0] in blocks]
        return sum(k for k, _ in rows) / sum(n for _, n in rows)

    early, late = ("block1", "block2"), ("block5",)  # 32x32 / 16x16 maps vs 2x2 maps
    assert kept_fraction(by_flops, early) < kept_fraction(by_params, early)
    assert kept_fraction(by_flops, late) > kept_fraction(by_params, late)


def test_bad_budgets_fail_clearly():
    model = vgg()
    scores = tfprune.score(model, "magnitude")
    with pytest.raises(tfprune.pruning.PlanError, match="one of"):
        tfprune.make_plan(model, scores, {"latency": 3})
    with pytest.raises(tfprune.pruning.PlanError, match="cannot be met"):
        tfprune.make_plan(model, scores, {"flops": 10})


def test_a_rounds_schedule_reaches_a_flops_budget_at_its_last_round(image_folder, tmp_path):
    import json

    from tfprune.config import load_config
    from tfprune.workflows.prune_run import prune

    def config(target_override):
        return load_config(None, [
            "model.name=vgg11", "model.width_multiplier=0.125", f"data.source={image_folder}",
            "data.batch_size=9", "train.epochs=3", "train.verbose=0",
            f"run.dir={tmp_path / 'run'}", "prune.measure=magnitude", "prune.rounds=2",
            target_override])

    dense = tfprune.models.build("vgg11", width_multiplier=0.125, num_classes=3,
                                 input_shape=(32, 32, 3))
    budget = 0.5 * flops(dense)
    result = prune(config(f"prune.target.flops={budget}"))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert 0.98 * budget <= summary["flops_after"] <= budget
    rows = [json.loads(p.read_text()) for p in sorted((result.run_dir / "plans").glob("*.json"))]
    first_budget = rows[0]["history"][-1]["target"]["flops"]
    assert len(rows) == 2 and budget < first_budget < flops(dense)  # halfway in round 1


@pytest.mark.parametrize("kind, measure", [("flops", flops), ("params", param_count)])
def test_a_budget_with_rounding_keeps_multiples_and_lands_within_a_block(kind, measure):
    model = vgg()
    scores = tfprune.score(model, "magnitude")
    budget = 0.5 * measure(model)
    plan = tfprune.make_plan(model, scores, {kind: budget}, round_to=8)
    after = measure(model, plan)
    assert after <= budget
    for group in plan.groups:
        kept, size = int(plan.keep[str(group["index"])].sum()), len(plan.keep[str(group["index"])])
        assert kept % 8 == 0 or kept == size, (group["members"], kept)
    # no block of 8 could have stayed: putting back the cheapest removed block overshoots
    unrounded = measure(model, tfprune.make_plan(model, scores, {kind: budget}))
    assert after >= 0.9 * unrounded, (after, unrounded)
    # and the next round goes on from it, still in multiples of 8
    tighter = tfprune.make_plan(model, scores, {kind: 0.3 * measure(model)}, round_to=8,
                                previous=plan)
    assert all(k.sum() % 8 == 0 or k.all() for k in tighter.keep.values())
    assert measure(model, tighter) <= 0.3 * measure(model)
