"""The channel graph is analysed once per (model, ignored layers) and shared by every user."""

import keras

import tfprune
from tfprune.graph.channels import ChannelGraph, graph_for


def cnn():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, name="c2")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def test_one_analysis_is_shared_by_the_pruner_plans_masks_and_slim(monkeypatch):
    analysed = []
    original = ChannelGraph.__init__

    def counting(self, model, ignored_layers=(), gqa="groups"):
        analysed.append(tuple(sorted(ignored_layers)))
        original(self, model, ignored_layers, gqa)

    monkeypatch.setattr(ChannelGraph, "__init__", counting)
    model = cnn()
    pruner = tfprune.Pruner(model, "magnitude", verbose=0)
    pruner.step(0.3)
    pruner.apply()
    tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    pruner.slim()
    tfprune.pruning.stats.pruning_summary(model, pruner.plan)
    assert analysed == [()]
    assert graph_for(model) is pruner.graph


def test_other_ignored_layers_get_their_own_graph():
    model = cnn()
    assert graph_for(model, ["c1"]) is not graph_for(model)
    assert graph_for(model, ["c1"]) is graph_for(model, ("c1",))
    assert [g.sources for g in graph_for(model, ["c1"]).groups] == [["c2"]]


def test_a_changed_model_is_analysed_again():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c1"),
                              keras.layers.Conv2D(6, 3, name="c2"), keras.layers.Flatten(),
                              keras.layers.Dense(2, name="head")])
    first = graph_for(model)
    assert graph_for(model) is first
    assert graph_for(cnn()) is not first
    model.pop()  # a Sequential model edited in place: its layers change
    model.add(keras.layers.Dense(5, name="wider_head"))
    second = graph_for(model)
    assert second is not first
    assert "wider_head" in second.operations and "head" not in second.operations


def test_the_cache_is_invisible_to_keras_saving(tmp_path):
    model = cnn()
    graph_for(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]
