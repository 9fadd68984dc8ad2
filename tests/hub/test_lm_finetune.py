"""``tfprune finetune`` of a causal LM: prune, slim, recover by distillation, resume.

A tiny Gemma with a SentencePiece vocabulary trained here, saved with its
preprocessor; a text of generated paragraphs. The run is stopped after its
first epoch's checkpoint and resumed from the command line.
"""

import io
import json
import random

import keras
import keras_hub
import numpy as np
import pytest
import sentencepiece
import yaml

import tfprune
from tfprune.cli.main import main
from tfprune.workflows import lm_finetune

WORDS = ("pruning removes channels whose removal changes the loss least gradient flow weights "
         "decide which filters matter early training magnitude keeps largest norms").split()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    keras.utils.set_random_seed(0)  # before the tokenizer: a later seed breaks its tf.data use
    rng = random.Random(0)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
                  for _ in range(40)]
    (folder / "text.txt").write_text("\n\n".join(paragraphs))
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(paragraphs), model_writer=proto, vocab_size=40,
        model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="<pad>",
        bos_piece="<bos>", eos_piece="<eos>", unk_piece="<unk>", minloglevel=2)
    tokenizer = keras_hub.models.GemmaTokenizer(proto=proto.getvalue())
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, head_dim=4)
    lm = keras_hub.models.GemmaCausalLM(
        backbone=backbone,
        preprocessor=keras_hub.models.GemmaCausalLMPreprocessor(tokenizer, sequence_length=12))
    lm.save(folder / "dense.keras")
    config = {"run": {"name": "lm", "dir": str(folder / "run")},
              "finetune": {"source": str(folder / "dense.keras"), "distill": True},
              "lm": {"text": str(folder / "text.txt"), "batch_size": 4, "steps_per_epoch": 1},
              "prune": {"measure": "magnitude", "target": 0.4, "uniform": True, "num_samples": 16,
                        "axes": ["heads", "mlp"]},
              "train": {"epochs": 2}}
    (folder / "lm.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_an_interrupted_run_resumes_and_reports_perplexity(files, monkeypatch, capsys):
    original = lm_finetune._EpochCheckpoint.on_epoch_end

    def stop_after_the_first(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt  # as a kill after epoch 1's checkpoint

    monkeypatch.setattr(lm_finetune._EpochCheckpoint, "on_epoch_end", stop_after_the_first)
    assert main(["finetune", str(files / "lm.yaml")]) == 130  # "resume with --resume"
    run = tfprune.run_folder.RunFolder(files / "run")
    assert run.state == "interrupted" and run.finished_epochs() == 1
    monkeypatch.setattr(lm_finetune._EpochCheckpoint, "on_epoch_end", original)
    capsys.readouterr()
    assert main(["finetune", "--resume", str(run.path)]) == 0
    printed = capsys.readouterr().out
    assert "distilled from the dense model" in printed and "held-out perplexity" in printed
    summary = json.loads(run.summary.read_text())
    assert summary["kind"] == "causal_lm" and summary["epochs"] == 2
    assert summary["student_class"] == "GemmaCausalLM"
    assert summary["params_after"] < summary["params_before"]
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2]
    assert all(np.isfinite(summary[key]) for key in
               ("perplexity_dense", "perplexity_pruned", "perplexity_final"))
    student = tfprune.model_files.load_model_file(run.model)
    assert student.backbone.get_config()["intermediate_dim"] < 32
    assert main(["finetune", "--resume", str(run.path)]) == 2  # finished: never rewritten


def test_a_source_that_is_no_causal_lm_is_refused_before_any_work(files, tmp_path, capsys):
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "dense.keras")
    config = yaml.safe_load((files / "lm.yaml").read_text())
    config["finetune"]["source"] = str(tmp_path / "dense.keras")
    config["run"]["dir"] = str(tmp_path / "run")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    assert main(["finetune", str(tmp_path / "bad.yaml")]) == 2
    assert "must be a keras-hub CausalLM saved with its preprocessor" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()
