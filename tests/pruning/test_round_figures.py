"""Per-round TensorBoard figures: written, read back with TensorBoard's reader, decodable."""

import keras
import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfprune
from tfprune.inspection import round_figures as figures
from tfprune.inspection.round_summaries import write_round
from tfprune.pruning.stats import layer_table


def model_with_layers(count):
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i in range(count):
        x = keras.layers.Conv2D(4 + i % 5, 1, name=f"layer_{i:03d}")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def test_large_models_are_paged_and_each_page_keeps_its_size():
    model = model_with_layers(95)
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    pages = figures.kept_fraction_figure(plan.kept_per_layer(), 0.5, 1)
    assert pages.shape[0] == 3 and pages.dtype == np.uint8 and pages.shape[-1] == 3
    masks = figures.mask_figure(plan.groups, plan.keep, None, 1)
    assert masks.shape[0] == 3
    scores = figures.scores_figure(tfprune.score(model, "magnitude"), 1)
    assert scores.shape[0] == 3 and scores.shape[1] > 400  # legible: 40 rows a page


def test_round_summaries_read_back_with_tensorboard(tmp_path):
    model = model_with_layers(6)
    scores = tfprune.score(model, "magnitude")
    first = tfprune.make_plan(model, scores, 0.25)
    second = tfprune.make_plan(model, scores, 0.5, previous=first)
    writer = tf.summary.create_file_writer(str(tmp_path))
    write_round(writer, second, scores, 2, previous=first, layer_table=layer_table(model, second))
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"pruning/kept_fraction", "pruning/masks", "pruning/scores", "pruning/summary",
            "pruning/kept_total"} <= tags
    for tag in ("pruning/kept_fraction", "pruning/masks", "pruning/scores"):
        (event,) = events.Tensors(tag)
        width, height, png = tf.make_ndarray(event.tensor_proto)[:3]
        image = tf.io.decode_png(png).numpy()
        assert image.shape[:2] == (int(height), int(width)) and image.shape[2] == 3
        assert image.std() > 10  # a drawn figure, not a blank
    (text,) = events.Tensors("pruning/summary")
    table = tf.make_ndarray(text.tensor_proto).item().decode()
    assert table.startswith("| layer | channels | kept | score min")
    assert "| layer_000 | 4 |" in table and "FLOPs after" in table


def test_mask_colours_mark_this_rounds_removals():
    groups = [{"index": 0, "size": 4, "sources": ["a"]}]
    keep = {"0": np.array([True, False, False, True])}
    previous = {"0": np.array([True, True, False, True])}
    image = figures.mask_figure(groups, keep, previous, 3, rows_per_page=1)[0]
    colours = {tuple(int(255 * int(c, 16) / 255) for c in (h[1:3], h[3:5], h[5:7]))
               for h in (figures.KEPT, figures.REMOVED_BEFORE, figures.REMOVED_NOW)}
    pixels = {tuple(p) for p in image.reshape(-1, 3)}
    assert colours <= pixels  # all three states drawn
