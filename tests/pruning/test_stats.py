import tfprune
from tfprune.pruning.stats import pruning_summary


def test_summary_lists_filters_kept_from_input_to_output():
    """Channel groups put ResNet's stem after stage 1's first convs; the summary must not."""
    model = tfprune.models.build("resnet20", width_multiplier=0.25)
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    kept = pruning_summary(model, plan)["filters_kept"]
    in_model_order = [layer.name for layer in model.layers if layer.name in kept]
    assert list(kept) == in_model_order and list(kept)[0] == "stem_conv"
    assert list(plan.kept_per_layer()) != in_model_order  # group order differs
    assert kept == plan.kept_per_layer()
