#!/usr/bin/python3
"""The training step of Deid.Training (Nitzan et al. 2020, §3.3) in plain Debian python3-torch, for the `training`
bench suite: the same networks at the published sizes, random weights, the same losses and the same updates, timed
with the same thread count as the C# run.

Networks (no torchvision needed):
  G      StyleGAN2 256 config-f, scripts/bench_reference.py's G (rosinality's model.py computation), frozen
  E_attr InceptionV3 as torchvision builds it, cut at the pooled 2048-d features, trained (train mode: batch statistics)
  E_id   pSp's IR-SE50 (112 px input after pSp's crop), frozen, eval mode
  E_lnd  face-api's FaceLandmark68Net (4 dense blocks of 4 separable convs, TF SAME padding), frozen
  M      2560-2048-1024-512-512, D_W 512-256-128-64-1, LeakyReLU(0.2), trained
Step: Adam on E_attr+M with λ1·L_adv + λ2·L_id + λ3·L_lnd + λ4·L_rec (L_rec = α(1-MS-SSIM) + (1-α)·L1 when
I_id = I_attr, i.e. except every third step), then Adam on D_W with the logistic loss plus R1 (γ = 10) on real w.

It also times dataset generation as `deid generate-dataset` does it: z → w by G's mapping, G(w) in batches of 8,
each image written as a PNG (zlib, no numpy/PIL needed) and the w kept.

usage: /usr/bin/python3 src/Deid.Bench/python/train_reference.py [--batch 6] [--warmup 1] [--steps 2]
       [--gen-images 14] [--threads N]
prints one JSON object: {"torch", "threads", "batch", "train": {"seconds": [..], "cpu_seconds": [..]},
"gen": {"images", "seconds", "cpu_seconds"}, "peak_rss_mb"}
"""
import argparse, json, math, os, struct, sys, tempfile, time, zlib
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from bench_reference import G, peak_rss_mb  # noqa: E402  (the models bench's G, reused)

LAMBDA_ADV, LAMBDA_ID, LAMBDA_LND, LAMBDA_REC, REC_ALPHA, R1_GAMMA = 1.0, 1.0, 0.001, 0.02, 0.84, 10.0
LR_G, LR_D, BETAS, CROSS_EVERY = 1e-5, 4e-5, (0.9, 0.999), 3


# ---------------------------------------------------------------- E_attr: torchvision's inception_v3, plain torch

class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    def __init__(self, cin, pool):
        super().__init__()
        self.b1 = BasicConv2d(cin, 64, kernel_size=1)
        self.b5 = nn.Sequential(BasicConv2d(cin, 48, kernel_size=1), BasicConv2d(48, 64, kernel_size=5, padding=2))
        self.b3 = nn.Sequential(BasicConv2d(cin, 64, kernel_size=1), BasicConv2d(64, 96, kernel_size=3, padding=1),
                                BasicConv2d(96, 96, kernel_size=3, padding=1))
        self.bp = BasicConv2d(cin, pool, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.bd = nn.Sequential(BasicConv2d(cin, 64, kernel_size=1), BasicConv2d(64, 96, kernel_size=3, padding=1),
                                BasicConv2d(96, 96, kernel_size=3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        def row(a, b): return BasicConv2d(a, b, kernel_size=(1, 7), padding=(0, 3))
        def col(a, b): return BasicConv2d(a, b, kernel_size=(7, 1), padding=(3, 0))
        self.b1 = BasicConv2d(cin, 192, kernel_size=1)
        self.b7 = nn.Sequential(BasicConv2d(cin, c7, kernel_size=1), row(c7, c7), col(c7, 192))
        self.bd = nn.Sequential(BasicConv2d(cin, c7, kernel_size=1), col(c7, c7), row(c7, c7), col(c7, c7), row(c7, 192))
        self.bp = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b7(x), self.bd(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b3 = nn.Sequential(BasicConv2d(cin, 192, kernel_size=1), BasicConv2d(192, 320, kernel_size=3, stride=2))
        self.b7 = nn.Sequential(BasicConv2d(cin, 192, kernel_size=1),
                                BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3)),
                                BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0)),
                                BasicConv2d(192, 192, kernel_size=3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b1 = BasicConv2d(cin, 320, kernel_size=1)
        self.b3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.b3_a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.b3_b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.bd_1 = nn.Sequential(BasicConv2d(cin, 448, kernel_size=1), BasicConv2d(448, 384, kernel_size=3, padding=1))
        self.bd_a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.bd_b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.bp = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        t = self.b3_1(x)
        d = self.bd_1(x)
        return torch.cat([self.b1(x), self.b3_a(t), self.b3_b(t), self.bd_a(d), self.bd_b(d),
                          self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3(nn.Module):
    """[B,3,299,299] in [-1,1] → [B,2048] pooled features (what Deid's InceptionV3.forward returns)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            BasicConv2d(3, 32, kernel_size=3, stride=2), BasicConv2d(32, 32, kernel_size=3),
            BasicConv2d(32, 64, kernel_size=3, padding=1), nn.MaxPool2d(3, 2),
            BasicConv2d(64, 80, kernel_size=1), BasicConv2d(80, 192, kernel_size=3), nn.MaxPool2d(3, 2))
        self.mixed = nn.Sequential(
            InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), InceptionB(288),
            InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160), InceptionC(768, 192),
            InceptionD(768), InceptionE(1280), InceptionE(2048))

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.mixed(self.stem(x)), 1), 1)


# ---------------------------------------------------------------- E_id: pSp's IR-SE50

class BottleneckIRSE(nn.Module):
    def __init__(self, cin, depth, stride):
        super().__init__()
        self.shortcut = nn.MaxPool2d(1, stride) if cin == depth else nn.Sequential(
            nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth))
        self.se1 = nn.Conv2d(depth, depth // 16, 1, bias=False)
        self.se2 = nn.Conv2d(depth // 16, depth, 1, bias=False)

    def forward(self, x):
        r = self.res(x)
        g = torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(r, 1)))))
        return r * g + self.shortcut(x)


class IrSe50(nn.Module):
    """Aligned 256² crops in [-1,1] → 512-d unit codes (pSp's crop 35:223, 32:220 and pool to 112 first)."""

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, cin = [], 64
        for depth, count in [(64, 3), (128, 4), (256, 14), (512, 3)]:
            for i in range(count):
                units.append(BottleneckIRSE(cin if i == 0 else depth, depth, 2 if i == 0 else 1))
            cin = depth
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, crops):
        x = F.adaptive_avg_pool2d(crops[:, :, 35:223, 32:220], 112)
        y = self.output_layer(self.body(self.input_layer(x)))
        return y / y.norm(2, 1, True)


# ---------------------------------------------------------------- E_lnd: face-api's FaceLandmark68Net

CHIP = (0.19, 0.294, 0.639)   # the face region of an FFHQ crop the net reads (left, top, size as fractions)


def pad_same(x, k, stride):
    def total(n): return max(((n + stride - 1) // stride - 1) * stride + k - n, 0)
    th, tw = total(x.shape[2]), total(x.shape[3])
    return F.pad(x, [tw // 2, tw - tw // 2, th // 2, th - th // 2])


class SepConv(nn.Module):
    def __init__(self, cin, cout, plain):
        super().__init__()
        self.plain, self.cin = plain, cin
        if plain:
            self.filters = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)
        else:
            self.depthwise = nn.Parameter(torch.randn(cin, 1, 3, 3) * 0.1)
            self.pointwise = nn.Parameter(torch.randn(cout, cin, 1, 1) * 0.1)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, stride):
        if self.plain:
            return F.conv2d(pad_same(x, 3, stride), self.filters, self.bias, stride)
        dw = F.conv2d(pad_same(x, 3, stride), self.depthwise, None, stride, groups=self.cin)
        return F.conv2d(dw, self.pointwise, self.bias)


class DenseBlock(nn.Module):
    def __init__(self, cin, cout, first):
        super().__init__()
        self.convs = nn.ModuleList([SepConv(cin, cout, first)] + [SepConv(cout, cout, False) for _ in range(3)])

    def forward(self, x):
        outs = [F.relu(self.convs[0](x, 2))]
        for conv in self.convs[1:]:
            # every layer sees the sum of the earlier outputs; relu before each, as face-api does
            outs.append(conv(F.relu(sum(outs)) if len(outs) > 1 else outs[0], 1))
        return F.relu(sum(outs))


class FaceLandmark68Net(nn.Module):
    """FFHQ crops [B,3,S,S] in [-1,1] → [B,68,2] landmarks in crop pixels (differentiable in the crops)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([DenseBlock(3, 32, True), DenseBlock(32, 64, False),
                                     DenseBlock(64, 128, False), DenseBlock(128, 256, False)])
        self.fc_w = nn.Parameter(torch.randn(256, 136) * 0.01)
        self.fc_b = nn.Parameter(torch.zeros(136))
        self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))

    def forward(self, crops):
        b, s = crops.shape[0], crops.shape[2]
        l, t, size = CHIP
        theta = torch.tensor([[size, 0, (l + size / 2) * 2 - 1], [0, size, (t + size / 2) * 2 - 1]]).expand(b, 2, 3)
        grid = F.affine_grid(theta, [b, 3, 112, 112], align_corners=False)
        face = F.grid_sample(crops, grid, "bilinear", "border", align_corners=False)
        x = ((face + 1) * 127.5 - self.mean) / 255
        for block in self.blocks:
            x = block(x)
        x = F.avg_pool2d(x, x.shape[2], 2).flatten(1)
        rel = (x @ self.fc_w + self.fc_b).view(-1, 68, 2)
        return rel * (size * s) + torch.tensor([l * s, t * s])


# ---------------------------------------------------------------- M, D_W, losses

def leaky_mlp(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


MS_SSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]


def ms_ssim(x, y):
    """Per image [B], TF's ssim_multiscale (11-tap σ=1.5 Gaussian, valid filtering, SYMMETRIC pad, relu, powers)."""
    c = x.shape[1]
    factors = []
    for k in range(5):
        if k:
            ph, pw = x.shape[2] % 2, x.shape[3] % 2
            x, y = (F.avg_pool2d(F.pad(t, [0, pw, 0, ph], mode="replicate"), 2) for t in (x, y))
        n = min(11, x.shape[2], x.shape[3])
        g = torch.exp(-(torch.arange(n) - (n - 1) / 2) ** 2 / (2 * 1.5 ** 2))
        g = g / g.sum()
        gh, gv = g.view(1, 1, 1, n).expand(c, 1, 1, n), g.view(1, 1, n, 1).expand(c, 1, n, 1)
        def filt(t): return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        mx, my = filt(x), filt(y)
        mm, mxy2 = mx ** 2 + my ** 2, 2 * mx * my
        lum = (mxy2 + c1) / (mm + c1)
        cs = (2 * filt(x * y) - mxy2 + c2) / (filt(x * x + y * y) - mm + c2)
        factors.append((cs if k < 4 else lum * cs).mean((2, 3)))
    v = torch.stack(factors, -1)
    w = torch.tensor(MS_SSIM_WEIGHTS)
    v = torch.where(v > 0, v.clamp_min(1e-12) ** w, torch.zeros_like(v))
    return v.prod(-1).mean(1)


class Step:
    """One training step over real-size random networks, as Deid.Training.Trainer.TrainStep does it."""

    def __init__(self):
        self.g = G(256)
        self.e_id, self.e_lnd = IrSe50().eval(), FaceLandmark68Net().eval()
        for p in list(self.e_id.parameters()) + list(self.e_lnd.parameters()):
            p.requires_grad_(False)
        self.e_attr, self.m, self.d = InceptionV3().train(), leaky_mlp([2560, 2048, 1024, 512, 512]), leaky_mlp([512, 256, 128, 64, 1])
        self.opt_g = torch.optim.Adam(list(self.e_attr.parameters()) + list(self.m.parameters()), LR_G, BETAS)
        self.opt_d = torch.optim.Adam(self.d.parameters(), LR_D, BETAS)
        self.n = 0

    def __call__(self, attr, real_w, other):
        cross = (self.n + 1) % CROSS_EVERY == 0
        ident = other if cross else attr
        with torch.no_grad():
            id_code, attr_lnd = self.e_id(ident), self.e_lnd(attr)
        a = F.interpolate(attr, (299, 299), mode="bilinear", align_corners=False)
        w = self.m(torch.cat([id_code, self.e_attr(a)], 1))
        out = self.g.synthesize(w)
        l_adv = F.softplus(-self.d(w)).mean()
        l_id = (id_code - self.e_id(out)).abs().mean()
        l_lnd = (attr_lnd[:, 17:] - self.e_lnd(out)[:, 17:]).pow(2).mean()
        if cross:
            l_rec = torch.zeros(())
        else:
            a01, o01 = (attr + 1) * 0.5, (out + 1) * 0.5
            l_rec = REC_ALPHA * (1 - ms_ssim(a01, o01).mean()) + (1 - REC_ALPHA) * (a01 - o01).abs().mean()
        total = LAMBDA_ADV * l_adv + LAMBDA_ID * l_id + LAMBDA_LND * l_lnd + LAMBDA_REC * l_rec
        losses = [t.item() for t in (total, l_adv, l_id, l_lnd, l_rec)]
        self.opt_g.zero_grad()
        total.backward()
        self.opt_g.step()

        fake = w.detach()
        l_d = F.softplus(-self.d(real_w)).mean() + F.softplus(self.d(fake)).mean()
        rw = real_w.detach().requires_grad_(True)
        grad, = torch.autograd.grad(self.d(rw).sum(), rw, create_graph=True)
        r1 = grad.pow(2).sum(1).mean() * (R1_GAMMA / 2)
        losses += [l_d.item(), r1.item()]
        with torch.no_grad():   # D_W's accuracy per side, logged by the C# trainer
            (self.d(real_w) > 0).float().mean().item(), (self.d(fake) <= 0).float().mean().item()
        self.opt_d.zero_grad()
        (l_d + r1).backward()
        self.opt_d.step()
        self.opt_g.zero_grad()
        self.opt_d.zero_grad()
        self.n += 1
        if not all(math.isfinite(v) for v in losses):
            raise SystemExit(f"non-finite loss at step {self.n}: {losses}")
        return losses


# ---------------------------------------------------------------- dataset generation

def write_png(path, img):
    """img [3,H,W] uint8 → an RGB PNG (filter 0 on every row, zlib level 1: OpenCV's default compression level)."""
    _, h, w = img.shape
    rows = img.permute(1, 2, 0).contiguous().view(h, w * 3)
    raw = b"".join(b"\x00" + bytes(r.tolist()) for r in rows)
    def chunk(kind, data): return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def generate(g, count, folder, batch=8):
    with torch.no_grad():
        w = g.map(torch.randn(count, 512))
        for b in range(0, count, batch):
            img = g.synthesize(w[b:b + batch]).clamp(-1, 1)
            img = ((img + 1) * 127.5).round().to(torch.uint8)
            for i in range(img.shape[0]):
                write_png(os.path.join(folder, f"{b + i:08d}.png"), img[i])
        torch.save(w, os.path.join(folder, "w.pt"))
    return w


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--gen-images", type=int, default=14)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    step = Step()

    with tempfile.TemporaryDirectory() as folder:
        t0, c0 = time.perf_counter(), cpu_seconds()
        w_all = generate(step.g, a.gen_images, folder)
        gen = {"images": a.gen_images, "seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - c0}

    def batch():
        idx = torch.randint(0, 1 << 30, (a.batch,))
        with torch.no_grad():   # images as a loader gives them: generated from dataset w
            imgs = step.g.synthesize(w_all[idx % w_all.shape[0]]).clamp(-1, 1)
        return imgs, w_all[idx % w_all.shape[0]]

    # The loader's images are precomputed outside the timed region, as the C# loader reads them from disk.
    batches = [(*batch(), batch()[0]) for _ in range(a.warmup + a.steps)]
    secs, cpus = [], []
    for k, (attr, real_w, other) in enumerate(batches):
        t0, c0 = time.perf_counter(), cpu_seconds()
        step(attr, real_w, other)
        if k >= a.warmup:
            secs.append(time.perf_counter() - t0)
            cpus.append(cpu_seconds() - c0)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
                      "train": {"seconds": secs, "cpu_seconds": cpus}, "gen": gen, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
