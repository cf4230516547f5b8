"""Classic zoo families: LeNet-5, small_convnet, AlexNet, VGG, GoogLeNet, MobileNet v1/v2.

Reference counts are torchvision's (BN running statistics excluded, ``profile(model)["params"]``) except
MobileNet v1, whose reference is Keras Applications' ``count_params()`` (BN moving statistics included).
Large models are built once each at 224x224x3; everything else at small inputs.
"""

import numpy as np
import pytest

from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import keras, layers
from edge_cnn.zoo import build, list_models, model_info, profile
from edge_cnn.zoo.googlenet import STAGES as GOOGLENET_STAGES
from edge_cnn.zoo.vgg import STAGES as VGG_STAGES

CLASSIC = ["lenet5", "small_convnet", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet"]
CLASSIC += ["mobilenet_v1", "mobilenet_v2"]
BN_FAMILIES = ["small_convnet", "googlenet", "mobilenet_v1", "mobilenet_v2"]  # + vgg with batch_norm=True

# name -> (torchvision parameter count, torchvision's published GFLOPS = G multiply-accumulates),
# at 224x224x3 with 1000 classes
REFERENCES = {
    "alexnet": (61_100_840, 0.71),
    "vgg16": (138_357_544, 15.47),
    "vgg19": (143_667_240, 19.63),
    "googlenet": (6_624_904, 1.50),
    "mobilenet_v2": (3_504_872, 0.30),
}
TORCHVISION_VGG = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240}


def small_shape(name: str) -> tuple[int, int, int]:
    """The family's minimum square input, with its default channel count."""
    info = model_info(name)
    size = info.min_input_size
    return (size, size, info.default_input_shape[2])


@pytest.fixture(scope="module")
def reference_model(request):
    """One large model at 224x224x3 / 1000 classes, shared by the count and MAC tests, freed afterwards."""
    model = build(request.param, input_shape=(224, 224, 3), num_classes=1000)
    yield model
    del model
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("reference_model", list(REFERENCES), indirect=True)
def test_parameter_count_equals_torchvision(reference_model):
    assert profile(reference_model)["params"] == REFERENCES[reference_model.name][0]


@pytest.mark.slow
@pytest.mark.parametrize("reference_model", list(REFERENCES), indirect=True)
def test_macs_within_five_percent_of_published(reference_model):
    published = REFERENCES[reference_model.name][1] * 1e9
    assert abs(profile(reference_model)["macs"] - published) / published < 0.05


@pytest.mark.parametrize("reference_model", ["googlenet"], indirect=True)
def test_googlenet_spatial_sizes_follow_torchvision_ceil_mode(reference_model):
    names = ("conv1_relu", "pool1", "pool2", "pool3", "pool4")
    sizes = [reference_model.get_layer(name).output_shape[1:3] for name in names]
    assert sizes == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]


@pytest.mark.parametrize("reference_model", ["alexnet"], indirect=True)
def test_alexnet_spatial_sizes_follow_torchvision(reference_model):
    sizes = [reference_model.get_layer(name).output_shape[1:3] for name in ("conv1_conv", "pool1", "pool2", "pool5")]
    assert sizes == [(55, 55), (27, 27), (13, 13), (6, 6)]


def test_mobilenet_v1_matches_keras_applications_and_the_paper():
    model = build("mobilenet_v1", input_shape=(224, 224, 3), num_classes=1000)
    assert model.count_params() == 4_253_864  # Keras Applications MobileNet(alpha=1.0)
    assert abs(profile(model)["macs"] - 569e6) / 569e6 < 0.05  # Howard et al. 2017, Table 8: 569 M mult-adds


def head_params(name: str, num_classes: int) -> int:
    """Parameters of the last dense layer, the only part of a GAP-headed model that depends on the classes."""
    features = {"googlenet": 1024, "mobilenet_v1": 1024, "mobilenet_v2": 1280, "small_convnet": 128}[name]
    return (features + 1) * num_classes


def vgg_params(name: str, size: int, num_classes: int, batch_norm: bool) -> int:
    """Torchvision-convention count of a VGG configuration (our batch_norm: conv without bias + BN)."""
    params, in_channels = 0, 3
    for stage in VGG_STAGES[name]:
        for filters in stage:
            params += 9 * in_channels * filters + (2 * filters if batch_norm else filters)
            in_channels = filters
    flat = (size // 32) ** 2 * 512
    return params + (flat + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * num_classes


def lenet5_params(num_classes: int) -> int:
    """At 32x32x1: C1 + C3 (fully connected to S2's 6 maps) + C5 + F6 + output."""
    c1 = (5 * 5 * 1 + 1) * 6
    c3 = (5 * 5 * 6 + 1) * 16
    c5 = (5 * 5 * 16 + 1) * 120
    f6 = (120 + 1) * 84
    return c1 + c3 + c5 + f6 + (84 + 1) * num_classes


ALEXNET_CONV_PARAMS = REFERENCES["alexnet"][0] - (6 * 6 * 256 + 1) * 4096 - (4096 + 1) * 4096 - (4096 + 1) * 1000

# Parameter counts (torchvision convention; count_params() for MobileNet v1) at the family minimum with
# 7 classes, derived from the reference counts by arithmetic on the part that depends on size and classes.
SMALL_COUNTS = {
    "lenet5": lenet5_params(7),
    # 3 x (3x3 conv without bias + BN gamma/beta) with 32/64/128 filters, then the dense head
    "small_convnet": (27 * 32 + 2 * 32) + (9 * 32 * 64 + 2 * 64) + (9 * 64 * 128 + 2 * 128)
    + head_params("small_convnet", 7),
    # at 63x63 the last map is 1x1x256
    "alexnet": ALEXNET_CONV_PARAMS + (256 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 7,
    "googlenet": REFERENCES["googlenet"][0] - head_params("googlenet", 1000) + head_params("googlenet", 7),
    "mobilenet_v1": 4_253_864 - head_params("mobilenet_v1", 1000) + head_params("mobilenet_v1", 7),
    "mobilenet_v2": REFERENCES["mobilenet_v2"][0] - head_params("mobilenet_v2", 1000) + head_params("mobilenet_v2", 7),
}
for _vgg in TORCHVISION_VGG:
    SMALL_COUNTS[_vgg] = vgg_params(_vgg, 32, 7, batch_norm=False)
    SMALL_COUNTS[f"{_vgg}-bn"] = vgg_params(_vgg, 32, 7, batch_norm=True)

SMALL_VARIANTS = [(name, {}) for name in CLASSIC] + [(name, {"batch_norm": True}) for name in TORCHVISION_VGG]


def variant_id(variant) -> str:
    name, options = variant
    return f"{name}-bn" if options.get("batch_norm") else name


@pytest.fixture(scope="module", params=SMALL_VARIANTS, ids=variant_id)
def small_model(request):
    """(variant id, model) at the family's minimum input with 7 classes; every test of a variant shares it."""
    name, options = request.param
    model = build(name, input_shape=small_shape(name), num_classes=7, **options)
    yield variant_id(request.param), model
    del model
    keras.backend.clear_session()


def test_lenet5_classic_count_is_61706():
    assert lenet5_params(10) == 61_706
    assert profile(build("lenet5", num_classes=10))["params"] == 61_706


@pytest.mark.parametrize("name", list(TORCHVISION_VGG))
def test_vgg_arithmetic_reproduces_torchvision_at_224(name):
    assert vgg_params(name, 224, 1000, batch_norm=False) == TORCHVISION_VGG[name]


def test_small_input_parameter_count_follows_from_the_reference(small_model):
    variant, model = small_model
    count = model.count_params() if variant == "mobilenet_v1" else profile(model)["params"]
    assert count == SMALL_COUNTS[variant]


def test_small_input_gives_probabilities_for_any_num_classes(small_model):
    _, model = small_model
    assert model.output_shape == (None, 7)
    batch = np.random.default_rng(0).random((2, *model.input_shape[1:]), dtype=np.float32)
    probabilities = model(batch, training=False).numpy()
    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def producers(model) -> dict[str, list[str]]:
    """Layer name -> names of the layers feeding it, from the Functional config."""
    return {
        layer["name"]: [inbound[0] for node in layer["inbound_nodes"] for inbound in node]
        for layer in model.get_config()["layers"]
    }


def test_no_lambda_layers_and_bn_follows_a_plain_convolution(small_model):
    variant, model = small_model
    assert not {type(layer).__name__ for layer in model.layers} & {"Lambda", "TFOpLambda", "SlicingOpLambda"}
    feeds = producers(model)
    batch_norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    for bn in batch_norms:
        (source,) = feeds[bn.name]
        conv = model.get_layer(source)
        assert isinstance(conv, (layers.Conv2D, layers.DepthwiseConv2D)), bn.name
        assert conv.activation is keras.activations.linear and not conv.use_bias, conv.name
    convs = [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D))]
    if variant.endswith("-bn"):
        assert len(batch_norms) == len(convs)  # VGG with batch_norm: one BN per convolution
    elif variant in BN_FAMILIES:
        assert batch_norms
    else:  # LeNet-5, AlexNet, plain VGG: no BN in the reference, biased convolutions as there
        assert not batch_norms and convs and all(conv.use_bias for conv in convs)


def aux_head_params(in_channels: int, num_classes: int) -> int:
    """1x1 conv 128 (no bias) + BN (gamma, beta) + FC 2048->1024 + FC 1024->classes, as torchvision's InceptionAux."""
    return in_channels * 128 + 2 * 128 + (2048 + 1) * 1024 + (1024 + 1) * num_classes


def test_googlenet_aux_logits_three_outputs_survive_saving(tmp_path):
    with_aux = build("googlenet", input_shape=(63, 63, 3), num_classes=7, aux_logits=True)  # the smallest: 4a is 4x4
    assert with_aux.output_shape == [(None, 7)] * 3
    batch = np.random.default_rng(0).random((2, 63, 63, 3), dtype=np.float32)
    outputs = with_aux(batch, training=False)
    assert [tuple(o.shape) for o in outputs] == [(2, 7)] * 3
    with_aux.save(tmp_path / "googlenet.keras")  # no Lambda: the graph and weights round-trip
    reloaded = keras.models.load_model(tmp_path / "googlenet.keras")(batch, training=False)
    for output, again in zip(outputs, reloaded):
        np.testing.assert_allclose(output.numpy(), again.numpy(), atol=1e-6)
    # the aux heads read inception 4a (512 channels) and 4d (528); torchvision with aux: 13,004,888 at 224/1000
    assert profile(with_aux)["params"] == SMALL_COUNTS["googlenet"] + aux_head_params(512, 7) + aux_head_params(528, 7)
    assert REFERENCES["googlenet"][0] + aux_head_params(512, 1000) + aux_head_params(528, 1000) == 13_004_888


def test_googlenet_aux_logits_rejects_too_small_input_and_no_top():
    with pytest.raises(EdgeCNNError, match="at least 63x63"):
        build("googlenet", input_shape=(62, 200, 3), aux_logits=True)  # 4a map 3x13
    with pytest.raises(EdgeCNNError, match="include_top"):
        build("googlenet", input_shape=(64, 64, 3), include_top=False, aux_logits=True)


def test_googlenet_branch5x5_kernel_five_is_the_paper():
    five = build("googlenet", input_shape=(32, 32, 3), num_classes=7, branch5x5_kernel=5)
    extra = sum(reduce * out * (25 - 9) for stage in GOOGLENET_STAGES for _, (_, _, _, reduce, out, _) in stage)
    assert profile(five)["params"] == SMALL_COUNTS["googlenet"] + extra
    with pytest.raises(EdgeCNNError, match="branch5x5_kernel"):
        build("googlenet", input_shape=(32, 32, 3), branch5x5_kernel=7)


# include_top=False at 64x98: the last feature map (height, width, channels), by hand from each network's strides
FEATURE_MAPS = {
    "lenet5": (9, 17, 120),  # 64: 60-30-26-13-9; 98: 94-47-43-21-17
    "small_convnet": (8, 12, 128),  # 98: 49-24-12
    "alexnet": (1, 2, 256),  # 64: 15-7-3-1; 98: 23-11-5-2
    "vgg11": (2, 3, 512),  # the four depths share one builder
    "googlenet": (2, 3, 1024),
    "mobilenet_v1": (2, 4, 1024),  # 'same' stride 2: 98-49-25-13-7-4
    "mobilenet_v2": (2, 4, 1280),
}
# googlenet at 64x98: conv1 32x49, then PyTorch's ceil_mode 3/2 pool gives 16x24
# ('same' padding would give 25 wide, 'valid' 15 high): a map with one even and one odd side.
INTERMEDIATE_MAPS = {"googlenet": ("pool1", (16, 24, 64))}


@pytest.mark.parametrize("name", list(FEATURE_MAPS))
def test_include_top_false_ends_in_the_last_feature_map(name):
    channels = model_info(name).default_input_shape[2]
    model = build(name, input_shape=(64, 98, channels), include_top=False)
    assert model.output_shape == (None, *FEATURE_MAPS[name])
    if name in INTERMEDIATE_MAPS:
        layer, shape = INTERMEDIATE_MAPS[name]
        assert model.get_layer(layer).output_shape == (None, *shape)


@pytest.mark.parametrize("name", CLASSIC)
def test_too_small_input_names_the_minimum(name):
    size = model_info(name).min_input_size
    with pytest.raises(EdgeCNNError, match=f"at least {size}x{size}"):
        build(name, input_shape=(size - 1, size + 10, 3))


@pytest.mark.parametrize("name", ["lenet5", "alexnet"])
def test_registered_minimum_is_tight(name):
    """One pixel less and the unchecked builder itself cannot shrink the map any further."""
    size = model_info(name).min_input_size
    with pytest.raises(ValueError):
        model_info(name).builder(input_shape=(size - 1, size - 1, 3))


def conv_widths(model) -> list[int]:
    return [layer.filters for layer in model.layers if isinstance(layer, layers.Conv2D)]


def test_width_multipliers_scale_the_channels():
    v1 = conv_widths(build("mobilenet_v1", input_shape=(32, 32, 3), alpha=0.5, include_top=False))
    assert (v1[0], v1[-1]) == (16, 512)  # Keras Applications: int(32 * 0.5), int(1024 * 0.5)
    v2_half = conv_widths(build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.5, include_top=False))
    v2_wide = conv_widths(build("mobilenet_v2", input_shape=(32, 32, 3), alpha=1.4, include_top=False))
    assert (v2_half[0], v2_half[-2], v2_half[-1]) == (16, 160, 1280)  # last channel not shrunk below 1280
    assert (v2_wide[0], v2_wide[-2], v2_wide[-1]) == (48, 448, 1792)  # make_divisible(c * 1.4, 8)
    assert conv_widths(build("small_convnet", input_shape=(32, 32, 3), width=0.5, include_top=False)) == [16, 32, 64]
    options = [model_info(name).width_option for name in ("mobilenet_v1", "mobilenet_v2", "small_convnet")]
    assert options == ["alpha", "alpha", "width"]
    with pytest.raises(EdgeCNNError, match="alpha"):
        build("mobilenet_v2", alpha=0)


def test_every_classic_model_is_registered_with_its_family():
    assert set(CLASSIC) <= set(list_models())
    assert list_models("vgg") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert model_info("lenet5").default_input_shape == (32, 32, 1)
    with pytest.raises(EdgeCNNError, match="unknown model"):
        build("vgg17")


def test_small_convnet_s2_sees_twice_the_resolution_for_the_same_cost():
    """The strided-stem variant on 128x64 costs what small_convnet costs on 64x32 (the pedestrian recipe's
    reason to use it: full-resolution windows with no resize), and its later stages see the same map sizes."""
    full = build("small_convnet_s2", input_shape=(128, 64, 3), num_classes=2, width=0.5)
    half = build("small_convnet", input_shape=(64, 32, 3), num_classes=2, width=0.5)
    assert full.name == "small_convnet_s2" and model_info("small_convnet_s2").family == "small"
    assert [full.get_layer(f"stage{i}_conv").strides for i in (1, 2, 3)] == [(2, 2), (1, 1), (1, 1)]
    assert full.get_layer("stage1_conv").output_shape == (None, 64, 32, 16)
    assert profile(full)["params"] == profile(half)["params"]
    assert profile(full)["macs"] == profile(half)["macs"] == 884_736 + 2 * 2_359_296 + 128  # 3 convs + 64x2 dense
    for index in (1, 2, 3):
        assert full.get_layer(f"stage{index}_pool").output_shape == half.get_layer(f"stage{index}_pool").output_shape
    with pytest.raises(EdgeCNNError, match="at least 16x16"):
        build("small_convnet_s2", input_shape=(8, 8, 3))
