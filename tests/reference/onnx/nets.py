"""Small random-weight image classifiers for the ONNX fixtures.

Reduced-width versions of the torchvision architectures (ResNet, VGG,
MobileNet V2/V3, EfficientNet, DenseNet) plus a convolution + attention net,
chosen so that together their exported graphs use every operator the crate's
ONNX evaluator covers. Every ReLU is its own `nn.ReLU` module, used once:
Captum's GuidedBackprop overrides `nn.ReLU` modules only, and the crate
substitutes every ONNX Relu node, so the two must be the same set.

Each net has a `cam` attribute path naming the module whose output is the
Grad-CAM layer (the last convolution block's output).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

# ImageNet constants, applied inside the graph (Sub and Div, broadcast over
# [1, 3, 1, 1]) so that the fixture inputs are plain [0, 1] images.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class TfSamePad(nn.Module):
    """Zero padding at the end of H and W only, as TensorFlow's SAME does for
    an odd total pad. The generator folds it into the next Conv (auto_pad
    SAME_UPPER, or explicit asymmetric pads), as tf2onnx writes such convs."""

    def forward(self, x):
        return F.pad(x, (0, 1, 0, 1))


def conv_bn(cin, cout, k, stride=1, padding=0, groups=1, dilation=1):
    # Conv followed by BatchNorm: the exporter folds the BN into the Conv.
    return [nn.Conv2d(cin, cout, k, stride, padding, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout)]


# --- ResNet -------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's BasicBlock with a ReLU module per use; `shortcut` is
    "identity", "conv" (1x1 stride-2 conv + BN) or "pad" (the CIFAR ResNet's
    option A: strided slice and zero channels, exported as Slice and Pad)."""

    def __init__(self, cin, cout, stride=1, dilation=1, groups=1, shortcut="identity"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.kind = shortcut
        self.extra = cout - cin
        if shortcut == "conv":
            self.down = nn.Sequential(*conv_bn(cin, cout, 1, stride))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.kind == "conv":
            sc = self.down(x)
        elif self.kind == "pad":
            sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        else:
            sc = x
        return self.relu2(out + sc)


class TinyResNet(nn.Module):
    """48 x 48 input: stem 5x5/2, max-pool 3/2/1, four basic blocks (a 1x1
    conv shortcut, a padded shortcut, a dilated block with a grouped conv),
    global average pool, `view(size(0), -1)` and a Linear."""

    cam = "layer4.relu2"

    def __init__(self, classes=10):
        super().__init__()
        self.norm = Normalize()
        self.conv1 = nn.Conv2d(3, 8, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, 2, shortcut="conv")
        self.layer3 = BasicBlock(16, 32, 2, shortcut="pad")
        self.layer4 = BasicBlock(32, 32, 1, dilation=2, groups=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.norm(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        # The classic flatten: shape arithmetic (Shape, Gather, Unsqueeze,
        # Concat) feeding a Reshape when the batch axis is dynamic.
        x = x.view(x.size(0), -1)
        return self.fc(x)


# --- VGG ----------------------------------------------------------------------


class TinyVgg(nn.Module):
    """32 x 32 input: 3x3 convs, max-pool 2/2, a LeakyReLU, a TF-style SAME
    stride-2 conv (exported as Conv with auto_pad SAME_UPPER), flatten and a
    Linear/ReLU/Dropout/Linear classifier (the Dropout and an Identity are
    written into the graph by the generator; the exporter drops them)."""

    cam = "features.11"

    def __init__(self, classes=10):
        super().__init__()
        self.norm = Normalize()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(),           # 0, 1
            nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(),           # 2, 3
            nn.MaxPool2d(2, 2),                            # 4 -> 16
            nn.Conv2d(8, 16, 3, 1, 1), nn.LeakyReLU(0.1),  # 5, 6
            nn.MaxPool2d(2, 2),                            # 7 -> 8
            TfSamePad(),                                   # 8
            nn.Conv2d(16, 32, 3, 2, 0), nn.ReLU(),         # 9, 10 -> 4
            nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU()),  # 11 (cam)
            nn.MaxPool2d(2, 2),                            # 12 -> 2
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * 2 * 2, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, classes))

    def forward(self, x):
        x = self.features(self.norm(x))
        x = torch.flatten(x, 1)
        return self.classifier(x)


# --- MobileNet V2 -------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *conv_bn(cin, mid, 1), nn.ReLU6(),
            *conv_bn(mid, mid, 3, stride, 1, groups=mid), nn.ReLU6(),
            *conv_bn(mid, cout, 1))

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class TinyMobileNetV2(nn.Module):
    """32 x 32 input: ReLU6 (Clip), depthwise convs (groups = channels),
    inverted residuals (Add), a mean over H and W (ReduceMean) and a Linear."""

    cam = "head"

    def __init__(self, classes=10):
        super().__init__()
        self.norm = Normalize()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3, 2, 1), nn.ReLU6())  # -> 16
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 2),
            InvertedResidual(16, 24, 2, 4),  # -> 8
            InvertedResidual(24, 24, 1, 4))
        self.head = nn.Sequential(*conv_bn(24, 64, 1), nn.ReLU6())
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(self.norm(x))))
        return self.classifier(x.mean((2, 3)))


# --- MobileNet V3 -------------------------------------------------------------


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: global average pool, 1x1 conv, ReLU, 1x1 conv,
    HardSigmoid, and a broadcast Mul over H and W."""

    def __init__(self, c, r):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(r, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class V3Block(nn.Module):
    def __init__(self, cin, mid, cout, k, stride, se, act):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers = []
        if mid != cin:
            layers += [*conv_bn(cin, mid, 1), act()]
        layers += [*conv_bn(mid, mid, k, stride, k // 2, groups=mid), act()]
        if se:
            layers.append(SqueezeExcite(mid, max(mid // 4, 4)))
        layers += conv_bn(mid, cout, 1)
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class TinyMobileNetV3(nn.Module):
    """32 x 32 input: HardSwish, SE blocks with HardSigmoid, depthwise 3x3
    and 5x5/2 convs, global average pool, flatten and a HardSwish classifier."""

    cam = "head"

    def __init__(self, classes=10):
        super().__init__()
        self.norm = Normalize()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3, 2, 1), nn.Hardswish())  # -> 16
        self.blocks = nn.Sequential(
            V3Block(16, 16, 16, 3, 1, True, nn.ReLU),
            V3Block(16, 48, 24, 5, 2, True, nn.Hardswish),  # -> 8
            V3Block(24, 64, 24, 3, 1, False, nn.Hardswish))
        self.head = nn.Sequential(*conv_bn(24, 96, 1), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(96, 64), nn.Hardswish(), nn.Linear(64, classes))

    def forward(self, x):
        x = self.pool(self.head(self.blocks(self.stem(self.norm(x)))))
        return self.classifier(torch.flatten(x, 1))


# --- EfficientNet -------------------------------------------------------------


class MeanSE(nn.Module):
    """EfficientNet's SE with the pool written as a mean (ReduceMean) and SiLU
    (Sigmoid * x) in the bottleneck, Sigmoid as the gate."""

    def __init__(self, c, r):
        super().__init__()
        self.fc1 = nn.Conv2d(c, r, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(r, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *conv_bn(cin, mid, 1), nn.SiLU(),
            *conv_bn(mid, mid, k, stride, k // 2, groups=mid), nn.SiLU(),
            MeanSE(mid, max(cin // 4, 4)),
            *conv_bn(mid, cout, 1))

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class TinyEfficientNet(nn.Module):
    """32 x 32 input: a TF-style SAME stem (folded into the Conv as explicit
    asymmetric pads [0, 0, 1, 1]), SiLU (Sigmoid, Mul), MBConv blocks with
    mean-SE, global average pool, two Squeezes and a Tanh classifier."""

    cam = "head"

    def __init__(self, classes=10):
        super().__init__()
        self.norm = Normalize()
        self.stem = nn.Sequential(TfSamePad(), *conv_bn(3, 16, 3, 2, 0), nn.SiLU())  # -> 16
        self.blocks = nn.Sequential(
            MBConv(16, 16, 3, 1, 2),
            MBConv(16, 24, 5, 2, 3))  # -> 8
        self.head = nn.Sequential(*conv_bn(24, 80, 1), nn.SiLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(80, 32), nn.Tanh(), nn.Linear(32, classes))

    def forward(self, x):
        x = self.pool(self.head(self.blocks(self.stem(self.norm(x)))))
        return self.classifier(x.squeeze(-1).squeeze(-1))


# --- DenseNet -----------------------------------------------------------------


class DenseLayer(nn.Module):
    """Pre-activation BN, ReLU, 1x1 conv, BN, ReLU, 3x3 conv; the first BN
    follows a Concat, so it stays a BatchNormalization node."""

    def __init__(self, cin, growth):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        y = self.conv1(self.relu1(self.norm1(x)))
        y = self.conv2(self.relu2(self.norm2(y)))
        return torch.cat([x, y], 1)


class Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2, 2))


class TinyDenseNet(nn.Module):
    """32 x 32 input: a stride-2 stem, dense blocks (Concat), unfused BatchNormalization,
    transitions with AveragePool 2/2, final BN + ReLU, global pool, flatten."""

    cam = "final_relu"

    def __init__(self, classes=10, growth=6):
        super().__init__()
        self.norm = Normalize()
        # Stride 2 as torchvision's stem: fewer ReLU units at full
        # resolution, fewer near-kink activations (see kink_sensitivity).
        self.stem = nn.Conv2d(3, 12, 3, 2, 1, bias=False)
        c = 12
        layers = []
        for block in range(3):
            for _ in range(2):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block < 2:
                layers.append(Transition(c, c // 2))
                c //= 2
        self.features = nn.Sequential(*layers)  # 16 -> 8 -> 4
        self.final_norm = nn.BatchNorm2d(c)
        self.final_relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        x = self.features(self.stem(self.norm(x)))
        x = self.pool(self.final_relu(self.final_norm(x)))
        return self.classifier(torch.flatten(x, 1))


# --- Convolution + attention ----------------------------------------------------


class TinyConvAttention(nn.Module):
    """32 x 32 input: reflection Pad, GELU (Erf), convs, then tokens
    (Reshape, Transpose) with a zero token prepended (ConstantOfShape,
    Concat), one self-attention (MatMul, Softmax), the zero token sliced off
    (Slice), a mean over tokens (ReduceMean), and Softmax at the end: the
    outputs are probabilities, not logits."""

    cam = "stage2"

    def __init__(self, classes=10, dim=24):
        super().__init__()
        self.norm = Normalize()
        self.pad = nn.ReflectionPad2d(1)
        self.stage1 = nn.Sequential(nn.Conv2d(3, 12, 3, 2, 0), nn.GELU())  # -> 16
        self.stage2 = nn.Sequential(*conv_bn(12, dim, 3, 2, 1), nn.GELU())  # -> 8
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.scale = dim ** -0.5
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stage2(self.stage1(self.pad(self.norm(x))))
        n, c = x.shape[0], x.shape[1]
        t = x.reshape(n, c, -1).transpose(1, 2)  # [N, HW, C]
        t = torch.cat([torch.zeros(n, 1, c), t], 1)
        a = torch.softmax(torch.matmul(self.q(t), self.k(t).transpose(1, 2)) * self.scale, -1)
        t = t + torch.matmul(a, self.v(t))
        pooled = t[:, 1:, :].mean(1)
        return torch.softmax(self.fc(pooled), 1)


# name -> (constructor, input side, opset, seed)
NETS = {
    "resnet": (TinyResNet, 48, 17, 1),
    "vgg": (TinyVgg, 32, 17, 2),
    "mobilenet_v2": (TinyMobileNetV2, 32, 17, 3),
    "mobilenet_v3": (TinyMobileNetV3, 32, 17, 4),
    "mobilenet_v3_opset13": (TinyMobileNetV3, 32, 13, 4),
    "efficientnet": (TinyEfficientNet, 32, 17, 5),
    "densenet": (TinyDenseNet, 32, 17, 6),
    "conv_attention": (TinyConvAttention, 32, 17, 7),
}


# --- Blastocyst grader ----------------------------------------------------------


class Grader(nn.Module):
    """48 x 48 input, 2 classes (good, poor): the blastocyst example's grader
    shape. Three 3x3 convs with ReLU (the first two followed by max-pool
    2/2), global average pool, flatten, Linear. No normalisation in the
    graph: it takes the example's generated embryos as they are (about
    [-1, 1])."""

    cam = "relu3"

    def __init__(self, classes=2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 3, 1, 1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv3 = nn.Conv2d(16, 32, 3, 1, 1)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool(self.relu3(self.conv3(x)))
        return self.head(torch.flatten(x, 1))
