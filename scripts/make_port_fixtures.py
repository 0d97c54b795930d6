#!/usr/bin/python3
"""Test fixtures for `deid models import --as port-attr-encoder|port-mapper` (run with Debian's python3-torch 1.13 and
python3-torchvision 0.14: /usr/bin/python3 scripts/make_port_fixtures.py OUT_DIR [--only attr,mapper,small]).

The PyTorch port of the paper (danielroich/ID-disentanglement-Pytorch) publishes its trained E_attr and M as whole
pickled modules (torch.save(model)). A pickle names every class by module path, so the stand-ins below are defined in
a temporary package laid out like the port's (Models/Encoders/Inception.py, Models/LatentMapper.py): the files written
here refer to the same globals as the published ones. Weights are random (seeded); reference outputs of the same
modules, computed the way the port runs them, go to port_reference.pt (a plain dict of tensors).

Outputs (OUT_DIR):
  attr_encoder_FIXTURE_0.pt  the port's Inception wrapper, full size (~95 MB), saved in training mode as the port does
  maper_FIXTURE_0.pt         the port's LatentMapper, full size (~32 MB); maper_FIXTURE_legacy.pt the same, legacy format
  port_reference.pt          attr.crop [-1,1] -> attr.features; mapper.id + mapper.attr -> mapper.w
small (a few KB each):
  bad_unknown_class.pt       a LatentMapper whose Sequential holds a class outside Deid's allow-list (Models.Extras.Probe)
  maper_misshaped.pt         a tiny LatentMapper: wrong widths and a Linear without bias
  attr_encoder_nopool.pt     an Inception wrapper whose Sequential lacks the max-pools (torchvision < 0.8's children);
                             attr_encoder_nopool_rewrapped.pt the same inside one more Sequential, as the Inference
                             notebook's Inception(loaded) holds it
  attr_encoder_py37enum.pt   the nopool wrapper with its Resize's InterpolationMode pickled as Python 3.7 did
                             (InterpolationMode('bilinear'); Python >= 3.11 writes getattr(InterpolationMode, 'BILINEAR'))
"""
import os, sys, tempfile, textwrap

# The stand-ins: the port's class names, attribute names and Sequential layouts; nothing else of the port is needed.
PACKAGE = {
    "Models/__init__.py": "",
    "Models/Encoders/__init__.py": "",
    "Models/Encoders/Inception.py": '''
        import torch.nn as nn
        import torchvision
        import torchvision.transforms as transforms

        class Inception(nn.Module):
            """E_attr as the port builds it: torchvision's Inception3 children minus fc, run as one nn.Sequential."""
            def __init__(self, children=None):
                super().__init__()
                if children is None:
                    full = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
                    children = list(full.children())[:-1]
                self.model = nn.Sequential(*children)
                self.preprocess = transforms.Compose([transforms.Resize(299), transforms.CenterCrop(299)])

            def forward(self, rgb01):
                return self.model(self.preprocess(rgb01) * 255)
    ''',
    "Models/LatentMapper.py": '''
        import torch.nn as nn

        class LatentMapper(nn.Module):
            """M as the port builds it: Linear 2560-2048-1024-512-512, LeakyReLU(0.2) modules between."""
            def __init__(self, widths=(2560, 2048, 1024, 512, 512), bias=True):
                super().__init__()
                layers = []
                for i in range(len(widths) - 1):
                    if i:
                        layers.append(nn.LeakyReLU(negative_slope=0.2))
                    layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias or i < len(widths) - 2))
                self.model = nn.Sequential(*layers)

            def forward(self, codes):
                return self.model(codes)
    ''',
    "Models/Extras.py": '''
        import torch.nn as nn

        class Probe(nn.Module):
            """A module class the port never published: Deid must refuse to read it."""
            def forward(self, x):
                return x
    ''',
}


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    out = os.path.abspath(args[0])
    only = set(args[args.index("--only") + 1].split(",")) if "--only" in args else {"attr", "mapper", "small"}
    os.makedirs(out, exist_ok=True)

    import torch
    import torch.nn as nn
    pkg = tempfile.mkdtemp(prefix="port-pkg-")
    for rel, src in PACKAGE.items():
        path = os.path.join(pkg, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(src))
    sys.path.insert(0, pkg)
    from Models.Encoders.Inception import Inception
    from Models.LatentMapper import LatentMapper
    from Models.Extras import Probe

    torch.manual_seed(20210321)
    torch.set_grad_enabled(False)
    reference = {}

    if "attr" in only:
        enc = Inception()
        # He-scaled convolutions and non-trivial BatchNorm statistics keep the activations of all 94 layers near unit
        # scale, so an absolute tolerance means something at the output.
        for m in enc.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.6, 1.2)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.8, 1.6)
                m.num_batches_tracked.fill_(1234)
        enc.train()   # the port saves mid-training
        torch.save(enc, os.path.join(out, "attr_encoder_FIXTURE_0.pt"))
        enc.eval()
        crop = torch.rand(2, 3, 256, 256) * 2 - 1          # an aligned crop as Deid holds it, RGB in [-1,1]
        reference["attr.crop"] = crop
        reference["attr.features"] = enc((crop + 1) / 2).flatten(1)   # the port feeds RGB in [0,1]

    if "mapper" in only:
        m = LatentMapper()
        for layer in m.model:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, a=0.2)
                layer.bias.normal_(0.0, 0.1)
        m.train()
        torch.save(m, os.path.join(out, "maper_FIXTURE_0.pt"))
        torch.save(m, os.path.join(out, "maper_FIXTURE_legacy.pt"), _use_new_zipfile_serialization=False)
        m.eval()
        id_code, attr_code = torch.randn(3, 512), torch.randn(3, 2048)
        reference["mapper.id"] = id_code
        reference["mapper.attr"] = attr_code
        reference["mapper.w"] = m(torch.cat((id_code, attr_code), dim=1))   # the port's order: [id, attr]

    if "small" in only:
        probe = LatentMapper(widths=(4, 4))
        probe.model.append(Probe())
        torch.save(probe, os.path.join(out, "bad_unknown_class.pt"))
        torch.save(LatentMapper(widths=(16, 8, 8, 8, 8), bias=False), os.path.join(out, "maper_misshaped.pt"))
        from torchvision.models.inception import BasicConv2d
        nopool = Inception(children=[BasicConv2d(3, 4, kernel_size=3) for _ in range(5)])
        torch.save(nopool, os.path.join(out, "attr_encoder_nopool.pt"))
        # The port's Inference notebook re-wraps a loaded E_attr (Inception(loaded)): one Sequential more, model.0.N keys.
        torch.save(Inception(children=[nopool.model]), os.path.join(out, "attr_encoder_nopool_rewrapped.pt"))
        # The published files were pickled on Colab's Python 3.7, whose enums reduce to Class(value).
        from torchvision.transforms import InterpolationMode
        by_name = InterpolationMode.__reduce_ex__
        InterpolationMode.__reduce_ex__ = lambda self, protocol: (type(self), (self.value,))
        try:
            torch.save(nopool, os.path.join(out, "attr_encoder_py37enum.pt"))
        finally:
            InterpolationMode.__reduce_ex__ = by_name

    if reference:
        torch.save(reference, os.path.join(out, "port_reference.pt"))


if __name__ == "__main__":
    main()
