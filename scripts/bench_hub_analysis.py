"""Channel analysis and one snip score of a BERT-base-shaped keras-hub backbone.

BERT-base's shape (12 layers, hidden 768, 12 heads, MLP 3072, vocabulary
30522) with random weights under a 2-class head; ``channel_groups`` (the
traced blocks, the groups) timed from a fresh model, then one ``snip``
score on 32 random sequences. Prints the seconds of each part and the
process's peak resident memory (docs/results.md).

Usage:
    python scripts/bench_hub_analysis.py [--layers 12] [--length 128] [--samples 32]
"""

import argparse
import resource
import time

import keras
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()

    import keras_hub

    import tfprune

    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522, num_layers=args.layers, num_heads=12, hidden_dim=768,
        intermediate_dim=3072, max_sequence_length=512)
    inputs = {name: keras.Input((args.length,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    logits = keras.layers.Dense(2, name="head")(backbone(inputs)["pooled_output"])
    model = keras.Model(inputs, logits)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    built = time.perf_counter()

    groups = tfprune.channel_groups(model)
    analysed = time.perf_counter()

    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 30522, (args.samples, args.length)),
         "segment_ids": np.zeros((args.samples, args.length), "int32"),
         "padding_mask": np.ones((args.samples, args.length), "int32")}
    y = np.arange(args.samples) % 2
    scores = tfprune.score(model, "snip", (x, y), num_samples=args.samples, batch_size=8)
    scored = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    print(f"BERT-base shape: {args.layers} layers, {model.count_params():,} parameters, "
          f"{len(groups)} groups, {len(scores)} scored layers or units")
    print(f"build {built - started:.1f} s | channel_groups {analysed - built:.1f} s | "
          f"snip on {args.samples} x {args.length} tokens {scored - analysed:.1f} s | "
          f"analysis (groups + snip) {scored - built:.1f} s | peak memory {peak_gib:.1f} GiB")


if __name__ == "__main__":
    main()
