"""Every keras-hub backbone through tfprune end to end (docs/guides/keras-hub.md).

For each ``*Backbone`` class of the installed keras-hub that builds from a
small config with random weights: a 3-class Dense head on its main output
(``sequence_output``, else its last output: a decoder's, the deepest stage's)
(averaged over its token or spatial axes), then ``tfprune.check.check_model``:
channel groups, magnitude and snip scores, a plan removing 40%, a masked
copy, slim (fewer parameters, outputs within 1e-4 of the masked model's
scale) and a float LiteRT export run in the interpreter. SegFormer and
DeepLabV3 are assembled here from a small MiT and ResNet, and CLIP's and
SigLIP's image and text encoders are swept beside the backbones; other backbones
assembled from other backbones (``image_encoder=``, ``vision_encoder=``...)
or needing configs this script does not know are listed as not built, with
why.

Prints a Markdown table (model, groups, params, slimmed, slim error, LiteRT
error, seconds, result with the failing step and reason). Each backbone runs
in its own process.

Usage:
    python scripts/check_hub_models.py [NAME ...] [--no-tflite]
"""

import argparse
import inspect
import re
import subprocess
import sys
import traceback

import keras
import numpy as np

#: Small values for the constructor arguments most backbones share.
COMMON = {
    "vocabulary_size": 64, "vocab_size": 64, "num_layers": 2, "num_heads": 2,
    "num_attention_heads": 2, "num_query_heads": 4, "num_key_value_heads": 2,
    "hidden_dim": 16, "hidden_size": 16, "intermediate_dim": 32, "embedding_dim": 16,
    "head_dim": 4, "head_size": 4, "mlp_dim": 32, "patch_size": 4, "image_shape": (32, 32, 3),
    "num_experts": 4, "moe_intermediate_dim": 16, "max_sequence_length": 32,
    "shared_expert_intermediate_dim": 16, "shared_expert_intermediate_size": 16, "top_k": 2,
    "image_size": 32,  # Gemma 3 and 4 without a vision encoder: text only
}

#: Backbones whose arguments are not the common ones: the small config to build them with.
CONFIGS = {
    "ResNetBackbone": dict(input_conv_filters=[64], input_conv_kernel_sizes=[3],
                           stackwise_num_filters=[64, 16], stackwise_num_blocks=[1, 1],
                           stackwise_num_strides=[1, 2], block_type="basic_block",
                           image_shape=(32, 32, 3)),
    "VGGBackbone": dict(stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16],
                        image_shape=(32, 32, 3)),
    "DenseNetBackbone": dict(stackwise_num_repeats=[1, 1], image_shape=(32, 32, 3)),
    "CSPNetBackbone": dict(stem_filters=16, stem_kernel_size=3, stem_strides=1,
                           stackwise_depth=[1, 1], stackwise_strides=[2, 2],
                           stackwise_num_filters=[16, 32], block_type="bottleneck_block",
                           stage_type="csp", expand_ratio=[2.0], bottle_ratio=[0.5],
                           block_ratio=[1.0], image_shape=(32, 32, 3)),  # as CSPResNet-50
    "RoformerV2Backbone": dict(vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16,
                               intermediate_dim=32, head_size=8),  # heads x head_size = hidden
    "DeiTBackbone": dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                         hidden_dim=16, intermediate_dim=32),
    "ViTBackbone": dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                        hidden_dim=16, mlp_dim=32),
    "EfficientNetBackbone": dict(
        stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 1],
        stackwise_input_filters=[8, 8], stackwise_output_filters=[8, 16],
        stackwise_expansion_ratios=[1, 4], stackwise_squeeze_and_excite_ratios=[0.0, 0.25],
        stackwise_strides=[1, 2], stackwise_block_types=["fused", "unfused"],
        width_coefficient=1.0, depth_coefficient=1.0, image_shape=(32, 32, 3)),
    "XceptionBackbone": dict(stackwise_conv_filters=[[8, 16], [16, 32], [32, 32]],
                             stackwise_pooling=[True, True, False], image_shape=(71, 71, 3)),
    "SwinTransformerBackbone": dict(image_shape=(32, 32, 3), embed_dim=16, depths=(2, 2),
                                    num_heads=(2, 4), window_size=4, patch_size=4),
    **{name: dict(vocabulary_size=64, hidden_dim=16, intermediate_dim=32, num_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=False,
                  attention_dropout=0.0, rope_layer_enabled_list=[True, True],
                  layer_types=["attention", "attention"], mlp_bias=False,
                  layer_norm_epsilon=1e-5, max_position_embeddings=64, rope_theta=10000.0,
                  partial_rotary_factor=1.0)
       for name in ("SmolLMBackbone", "SmolLM3Backbone")},
    "MobileNetBackbone": dict(
        stackwise_expansion=[[40, 56], [64, 144]], stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]], stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]], output_num_filters=48, depthwise_filters=8,
        depthwise_stride=2, depthwise_residual=False, last_layer_filter=64,
        squeeze_and_excite=0.5, image_shape=(32, 32, 3)),
    "MiTBackbone": dict(layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
                        layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.0,
                        layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2],
                        hidden_dims=[8, 16], image_shape=(32, 32, 3)),
    "ViTDetBackbone": dict(hidden_size=16, num_layers=2, intermediate_dim=32, num_heads=2,
                           global_attention_layer_indices=[1], image_shape=(32, 32, 3),
                           patch_size=4, num_output_channels=8, window_size=4),
    "HGNetV2Backbone": dict(
        depths=[1, 1], embedding_size=16, hidden_sizes=[32, 64], stem_channels=[3, 8, 16],
        hidden_act="relu", use_learnable_affine_block=False,
        stackwise_stage_filters=[(16, 8, 32, 1, 1, 3), (32, 16, 64, 1, 1, 3)],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, False],
        image_shape=(32, 32, 3)),
    "PaliGemmaBackbone": dict(vocabulary_size=64, image_size=16, num_layers=2, num_query_heads=4,
                              num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
                              head_dim=4, vit_patch_size=8, vit_num_heads=2, vit_hidden_dim=16,
                              vit_num_layers=1, vit_intermediate_dim=32),
    "T5GemmaBackbone": dict(
        vocabulary_size=64, encoder_hidden_dim=16, encoder_intermediate_dim=32,
        encoder_num_layers=2, encoder_num_attention_heads=4, encoder_num_key_value_heads=2,
        encoder_head_dim=4, encoder_layer_types=["full_attention"] * 2, decoder_hidden_dim=16,
        decoder_intermediate_dim=32, decoder_num_layers=2, decoder_num_attention_heads=4,
        decoder_num_key_value_heads=2, decoder_head_dim=4,
        decoder_layer_types=["full_attention"] * 2),
    "AlbertBackbone": dict(vocabulary_size=64, num_layers=2, num_heads=2, embedding_dim=8,
                           hidden_dim=16, intermediate_dim=32, num_groups=1,
                           num_inner_repetitions=1, max_sequence_length=32),
}

def _assembled(name: str):
    """Backbones built here from small encoders (their other arguments, small)."""
    import keras_hub

    models = keras_hub.models
    if name == "SegFormerBackbone":
        return models.SegFormerBackbone(image_encoder=models.MiTBackbone(**CONFIGS["MiTBackbone"]),
                                        projection_filters=8)
    if name == "DeepLabV3Backbone":
        return models.DeepLabV3Backbone(
            image_encoder=models.ResNetBackbone(**CONFIGS["ResNetBackbone"]),
            spatial_pyramid_pooling_key="P3", upsampling_size=2, dilation_rates=[1, 2],
            low_level_feature_key="P2", projection_filters=8, image_shape=(32, 32, 3))
    if name in ENCODERS:  # CLIP's and SigLIP's towers, which their backbones are made of
        towers = dict(hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32)
        if "Vision" in name:
            return getattr(models, name)(patch_size=8, image_shape=(32, 32, 3), **towers)
        extra = {"projection_dim": 16} if name.startswith("SigLIP") else {}
        return getattr(models, name)(vocabulary_size=64, embedding_dim=16,
                                     max_sequence_length=12, **towers, **extra)
    return None


#: Encoders swept beside the backbones: CLIP's and SigLIP's image and text towers.
ENCODERS = ("CLIPTextEncoder", "CLIPVisionEncoder", "SigLIPTextEncoder", "SigLIPVisionEncoder")

#: Backbones the script assembles from small encoders (``_assembled``), and the encoders.
ASSEMBLED = ("SegFormerBackbone", "DeepLabV3Backbone", *ENCODERS)

#: Classes that are not models of their own: not swept, with why.
NOT_MODELS = {"FeaturePyramidBackbone": "a base class of image backbones, not a model"}

#: Backbones built from other backbones or models passed in: not swept, with why.
COMPOSED = {"image_encoder", "vision_encoder", "text_encoder", "backbone", "qformer",
            "language_model", "vae", "clip_l", "clip_g", "prompt_encoder", "mask_decoder"}


def backbone_names() -> list[str]:
    import keras_hub

    return sorted([name for name in dir(keras_hub.models)
                   if name.endswith("Backbone") and name != "Backbone"] + list(ENCODERS))


def small_config(name: str) -> dict:
    """The config to build ``name`` with; raises ValueError naming what it lacks."""
    import keras_hub

    if name in NOT_MODELS:
        raise ValueError(NOT_MODELS[name])
    if name in ASSEMBLED:
        return {}
    if name in CONFIGS:
        return CONFIGS[name]
    parameters = inspect.signature(getattr(keras_hub.models, name).__init__).parameters
    required = [p for p, v in parameters.items() if p not in ("self", "kwargs")
                and v.default is inspect.Parameter.empty
                and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]
    composed = sorted(set(required) & COMPOSED)
    if composed:
        raise ValueError(f"assembled from other models ({', '.join(composed)})")
    unknown = [p for p in required if p not in COMMON]
    if unknown:
        raise ValueError(f"no small config for {', '.join(unknown)}")
    config = {p: COMMON[p] for p in required}
    for optional in ("max_sequence_length", "image_shape"):
        if optional in parameters:
            config[optional] = COMMON[optional]
    return config


def sample_inputs(backbone, count: int = 8, length: int = 12):
    """Random inputs for every input of the backbone (token ids below the vocabulary)."""
    rng = np.random.default_rng(0)
    vocabulary = getattr(backbone, "vocabulary_size", None) or COMMON["vocabulary_size"]

    def one(tensor):
        shape = [count] + [length if size is None else size for size in tensor.shape[1:]]
        name = tensor.name
        if "int" in str(tensor.dtype) or "bool" in str(tensor.dtype):
            if "mask" in name:
                return np.ones(shape, "int32")
            if "segment" in name:
                return np.zeros(shape, "int32")
            return rng.integers(1, vocabulary, shape).astype("int32")
        return rng.random(shape).astype("float32")

    inputs = backbone.input
    if isinstance(inputs, dict):
        return {key: one(tensor) for key, tensor in inputs.items()}
    return one(inputs)


def with_head(backbone) -> keras.Model:
    """The backbone under a 3-class Dense head on its main output, averaged over its axes."""
    output = backbone.output
    if isinstance(output, dict):  # else the last sequence output (a decoder's), or last output
        sequences = [value for key, value in output.items() if key.endswith("sequence_output")]
        output = output.get("sequence_output", (sequences or list(output.values()))[-1])
    elif isinstance(output, list | tuple):
        output = output[-1]
    if len(output.shape) > 2:
        output = keras.ops.mean(output, axis=tuple(range(1, len(output.shape) - 1)))
    logits = keras.layers.Dense(3, name="sweep_head")(output)
    return keras.Model(backbone.input, logits, name=f"{backbone.name}_with_head")


def _flex_ops(error: Exception) -> str:
    """The Flex ops a LiteRT error names, or its first words."""
    text = getattr(error, "reason", None) or str(error)  # a LiteRTError's, without its path
    ops = sorted(set(re.findall(r"Flex[A-Z]\w+", text)))
    if ops:
        return f"the file needs Flex ops {', '.join(ops)}"
    return " ".join(text.split())[:130]


def check_one(name: str, tflite: bool) -> str:
    import keras_hub

    from tfprune.check import check_model
    from tfprune.export.tflite import LiteRTError

    try:
        config = small_config(name)
    except ValueError as why:
        return f"| {name} | | | | | | | not built: {why} |"
    step = "build"
    try:
        keras.utils.set_random_seed(0)
        backbone = _assembled(name) or getattr(keras_hub.models, name)(**config)
        model = with_head(backbone)
        inputs = sample_inputs(backbone)
        labels = np.arange(len(keras.tree.flatten(inputs)[0])) % 3
        step = "prune"
        try:
            check = check_model(model, inputs, labels, tflite=tflite)
            export_note = ""
        except LiteRTError as error:  # the pruning passed; the converter's limit is named
            check = check_model(model, inputs, labels, tflite=False)
            export_note = f" (no LiteRT check: {_flex_ops(error)})"
        except Exception as error:  # noqa: BLE001 - failing in export only is told as such
            check = check_model(model, inputs, labels, tflite=False)
            export_note = (f" (no LiteRT check: the export failed: {type(error).__name__}: "
                           f"{_flex_ops(error)})")
    except Exception as error:  # one model's failure must not hide the others'
        traceback.print_exc(file=sys.stderr)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras' bold markers
        message = " ".join(plain.split())[:160].replace("|", "/")
        return f"| {name} | | | | | | | FAIL at {step}: {type(error).__name__}: {message} |"
    result = ("pass" + export_note if check.passed
              else "FAIL: slim or LiteRT differ, or no parameter removed")
    return (f"| {name} | {check.groups} | {check.params_before:,} | {check.params_after:,} | "
            f"{check.slim_error:.1e} | {check.tflite_error:.1e} | {check.seconds:.0f} | "
            f"{result} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="keras_hub.models backbone names (default: all)")
    parser.add_argument("--no-tflite", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per backbone")
    args = parser.parse_args()
    names = args.names or backbone_names()
    if args.one:
        print(check_one(names[0], not args.no_tflite), flush=True)
        return 0
    print("| backbone | groups | params | slimmed | slim error | LiteRT error | s | result |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    failed = 0
    options = ["--no-tflite"] if args.no_tflite else []
    for name in names:
        try:
            child = subprocess.run([sys.executable, __file__, name, "--one", *options],
                                   stdout=subprocess.PIPE, text=True, timeout=args.timeout)
            row = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else (
                f"| {name} | | | | | | | FAIL: the process ended with code {child.returncode} |")
        except subprocess.TimeoutExpired:
            row = f"| {name} | | | | | | | FAIL: over {args.timeout} s |"
        print(row, flush=True)
        failed += "FAIL" in row
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
