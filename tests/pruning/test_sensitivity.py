"""Layer sensitivity: one group pruned at a time, evaluated, weights restored; ratios from it."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.pruning.sensitivity import layer_sensitivity
from tfprune.pruning.stats import flops

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 8, 8, 3)).astype("float32")
Y = (X[:, :4, :4, 0].mean(axis=(1, 2)) > 0).astype("int64")  # learnable: sign of a patch


def trained():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="a")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(X, Y, epochs=15, batch_size=32, verbose=0)
    return model


def test_each_row_is_the_model_with_that_group_pruned_alone():
    model = trained()
    before = [w.copy() for w in model.get_weights()]
    scores = tfprune.score(model, "magnitude")
    table = layer_sensitivity(model, scores, (X, Y), ratios=[0.25, 0.75])
    for a, b in zip(before, model.get_weights(), strict=True):  # weights restored
        np.testing.assert_array_equal(a, b)
    assert table.layers == ["a", "b"] and len(table.rows) == 4
    # independently: prune b by 75% with a one-group ratio plan and evaluate a copy
    plan = tfprune.make_plan(model, scores, {"b": 0.75}, min_keep=0)
    assert int(plan.keep["1"].sum()) == 2 and plan.keep["0"].all()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    tfprune.apply_plan(copy, plan)
    expected = copy.evaluate(X, Y, verbose=0, return_dict=True)
    row = next(r for r in table.rows if r["layer"] == "b" and r["ratio"] == 0.75)
    assert row["accuracy"] == pytest.approx(expected["accuracy"])
    assert row["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert row["flops"] == flops(model, plan)


def test_ratios_from_the_table():
    model = trained()
    table = layer_sensitivity(model, tfprune.score(model, "magnitude"), (X, Y),
                              ratios=[0.25, 0.5, 0.75])
    tolerant = table.ratios(max_drop=1.0)
    assert tolerant == {"a": 0.75, "b": 0.75}
    strict = table.ratios(max_drop=-1.0)
    assert strict == {"a": 0.0, "b": 0.0}
    scores = tfprune.score(model, "magnitude")

    def cost_of(ratios):
        return flops(model, tfprune.make_plan(model, scores, ratios, min_keep=0))

    budget = 0.5 * table.flops
    ratios = table.ratios(budget={"flops": budget}, cost_of=cost_of)
    assert cost_of(ratios) <= budget and max(ratios.values()) > 0
    with pytest.raises(ValueError, match="cannot reach"):
        table.ratios(budget={"flops": 1}, cost_of=cost_of)


def test_a_regressor_without_an_accuracy_metric_is_ranked_by_its_loss(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="a")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="value")(x))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    targets = X[:, :4, :4, 0].mean(axis=(1, 2), keepdims=True)
    model.fit(X, targets, epochs=10, batch_size=32, verbose=0)
    table = layer_sensitivity(model, tfprune.score(model, "magnitude"), (X, targets),
                              ratios=[0.25, 0.5, 0.75])
    assert table.metric == "loss" and table.baseline["accuracy"] is None
    losses = {row["ratio"]: row["loss"] for row in table.rows}
    base = table.baseline["loss"]
    # The largest ratio whose loss is within 10% of the unpruned loss, read off the rows.
    expected = max([0.0] + [ratio for ratio, loss in losses.items() if loss <= 1.1 * base])
    assert table.ratios(max_loss_increase=0.1) == {"a": expected}
    assert table.ratios(max_loss_increase=1e9) == {"a": 0.75}
    with pytest.raises(ValueError, match="no accuracy metric: give max_loss_increase"):
        table.ratios(max_drop=0.01)
    budget = table.ratios(budget={"flops": 0.6 * table.flops})  # steps ranked by added loss
    assert budget["a"] >= 0.25
    assert table.figure(tmp_path / "s.png").stat().st_size > 0
    assert ",," in table.to_csv(tmp_path / "s.csv").read_text()  # accuracy left blank


def test_the_command_writes_the_table_figure_tensorboard_and_ratios(tmp_path, capsys):
    from tfprune.cli.main import main

    model = trained()
    path = tmp_path / "model.keras"
    model.save(path)
    folder = tmp_path / "images"
    for label in (0, 1):
        (folder / "train" / str(label)).mkdir(parents=True)
        (folder / "test" / str(label)).mkdir(parents=True)
    from PIL import Image
    for index in range(40):
        label = index % 2
        pixels = RNG.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
        for split in ("train", "test"):
            Image.fromarray(pixels).save(folder / split / str(label) / f"{index}.png")
    code = main(["sensitivity", str(path), "--data", str(folder), "--ratios", "0.5",
                 "--samples", "30", "--max-drop", "0.5", "--output", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "per-layer ratios" in out
    for name in ("sensitivity.csv", "sensitivity.png", "ratios.json"):
        assert (tmp_path / "out" / name).is_file()
    assert list((tmp_path / "out" / "tensorboard").glob("events.*"))
    assert main(["sensitivity", str(path)]) == 2  # a bare model needs --data
    # The loss criterion works from the command line too; --max-drop needs an accuracy metric.
    code = main(["sensitivity", str(path), "--data", str(folder), "--ratios", "0.5",
                 "--samples", "30", "--max-loss-increase", "10", "--output", str(tmp_path / "l")])
    assert code == 0 and (tmp_path / "l" / "ratios.json").is_file()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "no_accuracy.keras")
    assert main(["sensitivity", str(tmp_path / "no_accuracy.keras"), "--data", str(folder),
                 "--max-drop", "0.1"]) == 2
    assert "compiled without an accuracy metric" in capsys.readouterr().err
