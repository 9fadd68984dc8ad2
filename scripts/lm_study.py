"""A small language model pruned by width, depth and both, then recovered: a real measurement.

Corpus: the Python reference documentation's topics that CPython ships
(``pydoc_data.topics``, about 465 KB of English) and, when it is beside the
repository, the paper's text; split by paragraph, 90% to train, 10% held
out. Tokenizer: a SentencePiece unigram vocabulary of 1000 pieces trained on
the training split. Model: a Gemma-shaped causal LM (keras-hub
``GemmaBackbone``: 6 blocks, hidden 192, 4 query heads over 2 key/value
heads of 48, MLP 768), about 2.5 M parameters, with random weights.

Part ``pretrain`` trains it on next-token prediction for ``--minutes``
(resumable: ``keras.callbacks.BackupAndRestore`` in ``OUT/backup``; run it
again to continue), keeping the weights of the epoch (100 steps) with the
lowest held-out loss. Part ``measure`` prunes the pretrained model to half its
parameters four ways:

- width: a uniform plan (``uniform=True``) of snip scores on training text
  under a parameter budget, over every channel axis (query groups, MLP units,
  the hidden width), slimmed to a ``GemmaCausalLM``;
- width (activation): the same with the activation measure (Minitron: mean
  absolute activation per head and unit on the training text);
- depth: the blocks with the least Block Influence on training text removed
  (``tfprune.block_importance``, ``tfprune.drop_blocks``);
- both: width to three quarters of the parameters, then depth to half;

and recovers each for ``--recover-steps`` steps twice from the same pruned
weights: by distillation from the dense model (``tfprune.distill_causal_lm``,
half labels, half teacher) and by the labels alone. It reports held-out
perplexity (dense, pruned, recovered both ways), parameters, and greedy
generation latency per token (Keras, batch 1, 60 new tokens, median of 5)
in ``OUT/results.json``, ``OUT/results.md`` and ``OUT/perplexity.png``.

Part ``export`` writes the pretrained model (with its preprocessor) and the
corpus for ``tfprune finetune configs/finetune/gemma_lm_half.yaml``.

Usage:
    nice python scripts/lm_study.py --part pretrain --minutes 40
    nice python scripts/lm_study.py --part measure [--recover-steps 300]
    nice python scripts/lm_study.py --part export
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

SEED, VOCABULARY, LENGTH, BATCH = 0, 1000, 64, 32
CONFIG = {"num_layers": 6, "num_query_heads": 4, "num_key_value_heads": 2, "hidden_dim": 192,
          "intermediate_dim": 768, "head_dim": 48}
PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "gradient-flow-pruning.md"


def corpus() -> tuple[list[str], list[str]]:
    """Training and held-out paragraphs (every tenth held out)."""
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())
    if PAPER.exists():
        texts.append(PAPER.read_text())
    paragraphs = [" ".join(p.split()) for text in texts for p in text.split("\n\n")]
    paragraphs = [p for p in paragraphs if len(p) > 40]
    held = [p for i, p in enumerate(paragraphs) if i % 10 == 0]
    return [p for i, p in enumerate(paragraphs) if i % 10], held


def tokenizer(train: list[str], out: Path):
    """The SentencePiece vocabulary, trained once and kept in ``OUT/vocabulary.spm``."""
    import keras_hub
    import sentencepiece

    path = out / "vocabulary.spm"
    if not path.exists():
        proto = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(train), model_writer=proto, vocab_size=VOCABULARY,
            model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="<pad>",
            bos_piece="<bos>", eos_piece="<eos>", unk_piece="<unk>", minloglevel=2,
            input_sentence_size=len(train), shuffle_input_sentence=True)
        path.write_bytes(proto.getvalue())
    return keras_hub.models.GemmaTokenizer(proto=path.read_bytes())


def datasets(out: Path):
    """``(model, train dataset, held-out dataset)`` of raw strings, model freshly built."""
    import keras_hub
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)  # before the tokenizer (a later seed breaks it)
    train, held = corpus()
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer(train, out),
                                                              sequence_length=LENGTH)
    backbone = keras_hub.models.GemmaBackbone(vocabulary_size=VOCABULARY, **CONFIG)
    model = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)
    train_ds = (tf.data.Dataset.from_tensor_slices(train).shuffle(len(train), seed=SEED)
                .batch(BATCH, drop_remainder=True))
    held_ds = tf.data.Dataset.from_tensor_slices(held).batch(BATCH)
    return model, train_ds, held_ds


class StopAfter(keras.callbacks.Callback):
    """Stops training at the end of the first epoch past a wall-clock limit."""

    def __init__(self, minutes: float):
        super().__init__()
        self.deadline = time.monotonic() + 60 * minutes

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True


def pretrain(out: Path, minutes: float) -> None:
    """Next-token training for ``minutes``, resumable; the weights in ``OUT/dense.weights.h5``."""
    model, train_ds, held_ds = datasets(out)
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    state = out / "pretrain.json"
    done = json.loads(state.read_text())["epochs"] if state.exists() else 0
    print(f"pretraining {model.count_params():,} parameters from epoch {done}", flush=True)
    # The weights kept are those of the epoch with the lowest held-out loss (a model this
    # size overfits a corpus this small within a few passes).
    best = keras.callbacks.ModelCheckpoint(str(out / "dense.weights.h5"), monitor="val_loss",
                                           save_best_only=True, save_weights_only=True)
    if state.exists():
        best.best = json.loads(state.read_text())["best_val_loss"]
    losses = json.loads(state.read_text())["val_losses"] if state.exists() else []

    def record(epoch, logs):  # after every epoch, so a killed run keeps its state
        losses.append(float(logs["val_loss"]))
        state.write_text(json.dumps({"epochs": len(losses), "steps": 100 * len(losses),
                                     "best_val_loss": float(best.best),
                                     "val_losses": losses}))

    model.fit(train_ds.repeat(), steps_per_epoch=100, epochs=10_000, verbose=2,
              validation_data=held_ds,
              callbacks=[keras.callbacks.BackupAndRestore(str(out / "backup")), best,
                         keras.callbacks.LambdaCallback(on_epoch_end=record),
                         StopAfter(minutes)])
    epochs = len(losses)
    print(f"pretrained to epoch {epochs} (step {100 * epochs})", flush=True)


def token_latency_ms(model) -> float:
    """Median over 5 runs of greedy ``generate`` time per new token (batch 1, after warm-up).

    A 4-token prompt; ``generate`` fills the other 60 places of the sequence.
    """
    prompt = {"token_ids": np.zeros((1, LENGTH), int), "padding_mask": np.zeros((1, LENGTH), int)}
    prompt["token_ids"][0, :4] = [1, 20, 30, 40]
    prompt["padding_mask"][0, :4] = 1
    preprocessor, model.preprocessor = model.preprocessor, None
    try:
        model.compile(sampler="greedy")
        model.generate(prompt, stop_token_ids=None)  # traces
        times = []
        for _ in range(5):
            started = time.perf_counter()
            model.generate(prompt, stop_token_ids=None)
            times.append(time.perf_counter() - started)
    finally:
        model.preprocessor = preprocessor
    return 1000 * statistics.median(times) / (LENGTH - 4)


def measure(out: Path, recover_steps: int, fraction: float = 0.5) -> None:
    """Prunes the pretrained model four ways and recovers each two ways (module docstring)."""
    import tfprune

    teacher, train_ds, held_ds = datasets(out)
    teacher.load_weights(out / "dense.weights.h5")
    dense_params = teacher.count_params()
    calibration = train_ds.take(8)
    rows = [{"model": "dense", "params": dense_params,
             "perplexity": tfprune.perplexity(teacher, held_ds),
             "ms_per_token": token_latency_ms(teacher)}]
    print(rows[-1], flush=True)

    def width(model, params, measure="snip"):
        scores = tfprune.score(model, measure, calibration, num_samples=BATCH * 8,
                               batch_size=BATCH)
        plan = tfprune.make_plan(model, scores, {"params": params}, uniform=True)
        return tfprune.slim(model, plan)

    def depth(model, params):
        order = [int(i) for i in np.argsort(tfprune.block_importance(model, calibration))]
        drop, smaller = [], model
        while smaller.count_params() > params and len(drop) < len(order) - 1:
            drop.append(order[len(drop)])  # the least influence first
            smaller = tfprune.drop_blocks(model, drop)
        return smaller

    target = fraction * dense_params
    prunings = {"width": lambda: width(teacher, target),
                "width (activation)": lambda: width(teacher, target, "activation"),
                "depth": lambda: depth(teacher, target),
                "width and depth": lambda: depth(width(teacher, (1 + fraction) / 2 * dense_params),
                                                 target)}
    for name, prune in prunings.items():
        started = time.perf_counter()
        pruned = prune()
        weights = pruned.get_weights()
        row = {"model": name, "params": pruned.count_params(),
               "perplexity_pruned": tfprune.perplexity(pruned, held_ds),
               "ms_per_token": token_latency_ms(pruned),
               "config": {k: pruned.backbone.get_config()[k] for k in CONFIG},
               "prune_seconds": round(time.perf_counter() - started, 1)}
        for recovery, weight in (("distilled", 0.5), ("labels_only", 1.0)):
            pruned.set_weights(weights)  # (no seed here: a seed set now breaks the tokenizer)
            tfprune.distill_causal_lm(pruned, teacher, train_ds.repeat(),
                                      steps_per_epoch=recover_steps, student_loss_weight=weight,
                                      verbose=0)
            row[f"perplexity_{recovery}"] = tfprune.perplexity(pruned, held_ds)
        rows.append(row)
        print(row, flush=True)
    state = json.loads((out / "pretrain.json").read_text())
    result = {"pretrain": state, "recover_steps": recover_steps, "rows": rows,
              "fraction": fraction,
              "config": CONFIG, "vocabulary": VOCABULARY, "sequence_length": LENGTH}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    write_report(out, result)


def export(out: Path) -> None:
    """``OUT/dense.keras`` (the pretrained model with its preprocessor) and ``OUT/corpus.txt``.

    The inputs of ``tfprune finetune configs/finetune/gemma_lm_half.yaml``: the
    corpus's paragraphs in order, blank-line separated, so ``lm.holdout_every:
    10`` holds out the same paragraphs as this script.
    """
    import pydoc_data.topics  # noqa: F401 - corpus() reads it

    model, _, _ = datasets(out)
    model.load_weights(out / "dense.weights.h5")
    model.save(out / "dense.keras")
    texts = list(pydoc_data.topics.topics.values())
    if PAPER.exists():
        texts.append(PAPER.read_text())
    paragraphs = [" ".join(p.split()) for text in texts for p in text.split("\n\n")]
    (out / "corpus.txt").write_text("\n\n".join(p for p in paragraphs if len(p) > 40))
    print(f"wrote {out / 'dense.keras'} and {out / 'corpus.txt'}", flush=True)


def write_report(out: Path, result: dict) -> None:
    """``results.md`` (a table) and ``perplexity.png`` (a bar chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    dense = rows[0]
    lines = ["| model | params | held-out perplexity: pruned | distilled | labels only | "
             "ms / token |", "|---|---|---|---|---|---|",
             f"| dense | {dense['params']:,} | {dense['perplexity']:.2f} | | | "
             f"{dense['ms_per_token']:.2f} |"]
    for row in rows[1:]:
        lines.append(f"| {row['model']} | {row['params']:,} | {row['perplexity_pruned']:.2f} | "
                     f"{row['perplexity_distilled']:.2f} | {row['perplexity_labels_only']:.2f} | "
                     f"{row['ms_per_token']:.2f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(7, 3.5))
    names = [row["model"] for row in rows[1:]]
    positions = np.arange(len(names))
    for offset, key, label in ((-0.27, "perplexity_pruned", "pruned"),
                               (0.0, "perplexity_labels_only", "labels only"),
                               (0.27, "perplexity_distilled", "distilled")):
        axis.bar(positions + offset, [row[key] for row in rows[1:]], 0.26, label=label)
    axis.axhline(dense["perplexity"], color="black", linestyle="--", label="dense")
    axis.set_xticks(positions, names)
    axis.set_yscale("log")
    axis.set_ylabel("held-out perplexity")
    axis.set_title(f"Budget {result['fraction']:.0%} of the parameters; "
                   f"{result['recover_steps']} recovery steps")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "perplexity.png", dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["pretrain", "measure", "report", "export"],
                        required=True, help="report: rewrite results.md and the figure from "
                        "results.json; export: dense.keras and corpus.txt for tfprune finetune")
    parser.add_argument("--out", default="runs/lm_study")
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--recover-steps", type=int, default=300)
    parser.add_argument("--fraction", type=float, default=0.5,
                        help="the parameters kept, as a fraction of the dense model's")
    parser.add_argument("--tiny", action="store_true", help="a 3-block model: a smoke test")
    args = parser.parse_args()
    if args.tiny:
        global VOCABULARY
        VOCABULARY = 200
        CONFIG.update(num_layers=3, hidden_dim=32, intermediate_dim=128, head_dim=8)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part == "pretrain":
        pretrain(out, args.minutes)
    elif args.part == "export":
        export(out)
    elif args.part == "report":
        write_report(out, json.loads((out / "results.json").read_text()))
    else:
        measure(out, args.recover_steps, args.fraction)


if __name__ == "__main__":
    main()
