#!/usr/bin/python3
"""Reference timings for Deid's models, timed with the same thread count as the C# run.

--model g (default): StyleGAN2 G, the same computation (shapes, modulated grouped convs, FIR upsampling,
stored noise) written in plain PyTorch; --size is the output resolution (256).
--model eattr: E_attr, torchvision's inception_v3 up to avgpool+flatten (the 2048-d pooled features Deid's
InceptionV3.forward returns; no dropout/fc, AuxLogits unused in eval); --size is the input side (299).

usage: /usr/bin/python3 scripts/bench_reference.py [--model g|eattr] [--size S] [--batches 1,8] [--repeats 2 | --images N] [--threads N]
prints one JSON object: {"model": m, "torch": version, "threads": n, "size": s, "runs": [{"batch": b, "seconds": [..]}],
"peak_rss_mb": m}
Weights are random: only the time matters here (parity is tested against reference outputs elsewhere).
"""
import argparse, json, math, resource, time
import torch
import torch.nn.functional as F


def fir_kernel(gain):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * gain


def upfirdn(x, k, up, pad0, pad1):
    b, c, h, w = x.shape
    t = x.reshape(-1, 1, h, w)
    if up > 1:
        t = F.pad(t.reshape(-1, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(-1, 1, h * up, w * up)
    t = F.pad(t, [pad0, pad1, pad0, pad1])
    o = F.conv2d(t, k.flip(0, 1).view(1, 1, *k.shape))
    return o.reshape(b, c, o.shape[2], o.shape[3])


class ModConv:
    def __init__(self, cin, cout, k, sdim, demod=True, up=False):
        self.w = torch.randn(1, cout, cin, k, k)
        self.mw, self.mb = torch.randn(cin, sdim), torch.ones(cin)
        self.cin, self.cout, self.k, self.demod, self.up = cin, cout, k, demod, up
        self.scale, self.mscale = 1 / math.sqrt(cin * k * k), 1 / math.sqrt(sdim)
        self.blur = fir_kernel(4)

    def __call__(self, x, s):
        b, _, h, w = x.shape
        s = F.linear(s, self.mw * self.mscale, self.mb).view(b, 1, self.cin, 1, 1)
        wt = self.scale * self.w * s
        if self.demod:
            wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.cout, 1, 1, 1)
        x = x.view(1, b * self.cin, h, w)
        if self.up:
            wt = wt.transpose(1, 2).reshape(b * self.cin, self.cout, self.k, self.k)
            o = F.conv_transpose2d(x, wt, stride=2, groups=b)
            return upfirdn(o.view(b, self.cout, o.shape[2], o.shape[3]), self.blur, 1, 1, 1)
        o = F.conv2d(x, wt.view(b * self.cout, self.cin, self.k, self.k), padding=self.k // 2, groups=b)
        return o.view(b, self.cout, o.shape[2], o.shape[3])


class StyledConv:
    def __init__(self, cin, cout, sdim, up=False):
        self.conv, self.nw, self.bias = ModConv(cin, cout, 3, sdim, up=up), torch.randn(1) * 0.1, torch.zeros(cout)

    def __call__(self, x, s, noise):
        x = self.conv(x, s) + self.nw * noise
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class ToRGB:
    def __init__(self, cin, sdim, up=True):
        self.conv, self.bias, self.up, self.k = ModConv(cin, 3, 1, sdim, demod=False), torch.zeros(1, 3, 1, 1), up, fir_kernel(4)

    def __call__(self, x, s, skip=None):
        o = self.conv(x, s) + self.bias
        return o if skip is None else o + upfirdn(skip, self.k, 2, 2, 1)


class G:
    def __init__(self, size=256, sdim=512, n_mlp=8, cm=2):
        ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
        self.mlp = [(torch.randn(sdim, sdim) / 0.01, torch.zeros(sdim)) for _ in range(n_mlp)]
        self.sdim, log = sdim, int(math.log2(size))
        self.n_latent, n_layers = log * 2 - 2, (log - 2) * 2 + 1
        self.const = torch.randn(1, ch[4], 4, 4)
        self.conv1, self.rgb1 = StyledConv(ch[4], ch[4], sdim), ToRGB(ch[4], sdim, up=False)
        self.noise = [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(n_layers)]
        self.convs, self.rgbs, cin = [], [], ch[4]
        for i in range(3, log + 1):
            cout = ch[2 ** i]
            self.convs += [StyledConv(cin, cout, sdim, up=True), StyledConv(cout, cout, sdim)]
            self.rgbs.append(ToRGB(cout, sdim))
            cin = cout

    def __call__(self, z):
        return self.synthesize(self.map(z))

    def map(self, z):
        w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for wt, b in self.mlp:
            w = F.leaky_relu(F.linear(w, wt * (0.01 / math.sqrt(self.sdim))) + b * 0.01, 0.2) * math.sqrt(2)
        return w

    def synthesize(self, w):
        """w [B,sdim] -> image [B,3,size,size]; differentiable in w (the weights are plain tensors: frozen)."""
        lat = w.unsqueeze(1).repeat(1, self.n_latent, 1)
        x = self.const.repeat(w.shape[0], 1, 1, 1)
        x = self.conv1(x, lat[:, 0], self.noise[0])
        skip = self.rgb1(x, lat[:, 1])
        i = 1
        for r, rgb in enumerate(self.rgbs):
            x = self.convs[2 * r](x, lat[:, i], self.noise[2 * r + 1])
            x = self.convs[2 * r + 1](x, lat[:, i + 1], self.noise[2 * r + 2])
            skip = rgb(x, lat[:, i + 2], skip)
            i += 2
        return skip


class InceptionFeatures:
    """torchvision inception_v3 (random weights) cut at the pooled features, like Deid's InceptionV3.forward."""

    def __init__(self):
        # Imported here so the G timing still works where python3-torchvision is not installed.
        from torchvision.models import inception_v3
        # init_weights=False: torchvision's truncated-normal init costs seconds and the values do not affect time.
        self.net = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
        n = self.net
        self.layers = [n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3,
                       n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                       n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.avgpool]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return torch.flatten(x, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["g", "eattr"], default="g")
    ap.add_argument("--size", type=int, default=0, help="G output side (default 256) or E_attr input side (default 299)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--images", type=int, default=0,
                    help="if > 0, time max(1, images // batch) runs per batch instead of --repeats (bounds slow models)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "g":
        size = a.size or 256
        net, make_input = G(size), lambda b: torch.randn(b, 512)
    else:
        size = a.size or 299
        net, make_input = InceptionFeatures(), lambda b: torch.randn(b, 3, size, size)
    runs = []
    with torch.no_grad():
        for b in [int(x) for x in a.batches.split(",") if x]:
            net(make_input(b))  # untimed run per batch size (oneDNN primitives per shape, allocator), as the C# side
            secs = []
            for _ in range(max(1, a.images // b) if a.images > 0 else a.repeats):
                x = make_input(b)
                t0 = time.perf_counter()
                net(x)
                secs.append(time.perf_counter() - t0)
            runs.append({"batch": b, "seconds": secs})
    print(json.dumps({"model": a.model, "torch": torch.__version__, "threads": torch.get_num_threads(), "size": size,
                      "runs": runs, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb():
    # VmHWM belongs to this exec'd image; ru_maxrss can carry the parent's peak across fork+exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
