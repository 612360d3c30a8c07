#!/usr/bin/python3
"""Writes the tensor test models of the predictor tests into OUTDIR.

Run with Debian's python3-torch, python3-onnx and python3-opencv (scripts/setup
installs them):
    /usr/bin/python3 tests/predict/make_tensor_models.py OUTDIR [--resnet18 SIZE]

  cnn.pt / cnn.onnx (+ .config.json)   a small seeded CNN, 3x32x32 image in, a 32-value
                                       embedding out (TorchScript by tracing; ONNX opset 11,
                                       batch dimension dynamic), image preprocessing in the
                                       config
  shapes.png, shapes.jpg, shapes-small.jpg, other.png
                                       a drawn image, re-encoded as JPEG and resized, and an
                                       unrelated one (image matching)
  pair.pt / pair.onnx (+ .config.json) two outputs, "zeta" [4] then "alpha" [3]: the graph's
                                       order is not the names' (OpenCV lists outputs by name)
  broken.onnx, broken.pt               not models
  unsupported.onnx                     a valid graph with an operator (NonZero) OpenCV 4.6
                                       cannot read
  reference.json                       4 input rows and PyTorch's outputs for them; the
                                       preprocessed row of shapes.png (OpenCV in Python);
                                       3 rows of pair's input and its outputs
With --resnet18 SIZE only resnet18.pt / resnet18.onnx (+ config): the ResNet-18 layout
(BasicBlocks 2-2-2-2, 64-512 channels, random weights, BatchNorm folded by eval) on
3 x SIZE x SIZE images, 1000 outputs (bench/batching).
"""
import json
import os
import sys

import cv2
import numpy as np
import torch
import torch.nn as nn

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, 32)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.zeta = nn.Linear(8, 4)
        self.alpha = nn.Linear(8, 3)

    def forward(self, x):
        return self.zeta(x), self.alpha(torch.relu(x))


class CountsNonZero(nn.Module):
    def forward(self, x):
        return torch.nonzero(x).float().sum(0, keepdim=True)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def strip_identities(path):
    """Removes Identity nodes (the exporter writes them for weights it folded; OpenCV 4.6's
    importer refuses an Identity of an initializer) by wiring their consumers to their input."""
    import onnx
    graph_model = onnx.load(path)
    graph = graph_model.graph
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    if not alias:
        return
    outputs = {o.name for o in graph.output}
    keep = [n for n in graph.node if n.op_type != "Identity" or n.output[0] in outputs]
    for n in keep:
        for i, name in enumerate(n.input):
            while name in alias and n.op_type != "Identity":
                name = alias[name]
            n.input[i] = name
    del graph.node[:]
    graph.node.extend(keep)
    onnx.save(graph_model, path)


def export(model, shape, out, name, outputs, image=None):
    model.eval()
    example = torch.randn(*shape)
    torch.jit.trace(model, example).save(os.path.join(out, f"{name}.pt"))
    torch.onnx.export(model, example, os.path.join(out, f"{name}.onnx"), opset_version=11,
                      input_names=["input"], output_names=[o[0] for o in outputs],
                      dynamic_axes={"input": {0: "batch"}, **{o[0]: {0: "batch"} for o in outputs}},
                      do_constant_folding=True)
    strip_identities(os.path.join(out, f"{name}.onnx"))
    config = {"inputs": [{"name": "input", "shape": [-1] + list(shape[1:]), "datatype": "FP32"}],
              "outputs": [{"name": o[0], "shape": [-1] + o[1]} for o in outputs]}
    if image:
        config["inputs"][0]["image"] = image
    with open(os.path.join(out, f"{name}.config.json"), "w") as f:  # beside both files
        json.dump(config, f)


def preprocess(path, size):
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0
    img = (img - np.array(MEAN)) / np.array(STD)
    return img.transpose(2, 0, 1).astype(np.float32)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(20261205)
    if "--resnet18" in sys.argv:
        size = int(sys.argv[sys.argv.index("--resnet18") + 1])
        export(ResNet18(), (1, 3, size, size), out, "resnet18", [("logits", [1000])])
        return
    cnn = SmallCnn()
    image = {"size": [32, 32], "channel_order": "RGB", "scale": 1 / 255.0, "mean": MEAN, "std": STD}
    export(cnn, (1, 3, 32, 32), out, "cnn", [("embedding", [32])], image)

    rng = np.random.default_rng(7)
    canvas = np.full((96, 128, 3), 255, np.uint8)
    cv2.rectangle(canvas, (10, 10), (60, 70), (200, 30, 30), -1)
    cv2.circle(canvas, (95, 50), 25, (20, 160, 40), -1)
    cv2.line(canvas, (0, 90), (127, 5), (10, 10, 200), 3)
    cv2.imwrite(os.path.join(out, "shapes.png"), canvas)
    cv2.imwrite(os.path.join(out, "shapes.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 75])
    small = cv2.resize(canvas, (96, 72), interpolation=cv2.INTER_AREA)
    cv2.imwrite(os.path.join(out, "shapes-small.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    other = (rng.random((80, 80, 3)) * 255).astype(np.uint8)
    other = cv2.GaussianBlur(other, (9, 9), 3)
    cv2.imwrite(os.path.join(out, "other.png"), other)
    with open(os.path.join(out, "broken.onnx"), "wb") as f:
        f.write(b"\x08\x07this is not a protobuf graph" * 4)
    with open(os.path.join(out, "broken.pt"), "wb") as f:
        f.write(b"PK not a torchscript archive")

    rows = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        outputs = cnn.eval()(rows)
    shapes_row = preprocess(os.path.join(out, "shapes.png"), 32)
    with torch.no_grad():
        shapes_out = cnn(torch.from_numpy(shapes_row)[None])[0]
    pair = Pair()
    export(pair, (1, 8), out, "pair", [("zeta", [4]), ("alpha", [3])])
    pair_rows = torch.randn(3, 8)
    with torch.no_grad():
        zeta, alpha = pair.eval()(pair_rows)
    torch.onnx.export(CountsNonZero(), torch.randn(1, 8), os.path.join(out, "unsupported.onnx"),
                      opset_version=11, input_names=["input"], output_names=["count"])
    reference = {"rows": rows.reshape(4, -1).tolist(), "embedding": outputs.tolist(),
                 "shapes_row": shapes_row.reshape(-1).tolist(),
                 "shapes_embedding": shapes_out.tolist(), "torch_version": torch.__version__,
                 "pair": {"rows": pair_rows.tolist(), "zeta": zeta.tolist(), "alpha": alpha.tolist()}}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f)


if __name__ == "__main__":
    main()
