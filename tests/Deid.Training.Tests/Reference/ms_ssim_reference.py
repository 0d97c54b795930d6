"""Independent MS-SSIM reference for Deid.Training's tests (Debian python3-torch, CPU, float64).

Written from the algorithm of TensorFlow's tf.image.ssim_multiscale (Wang et al. 2003 MS-SSIM), not from the C#
code: a 2-D Gaussian window built as TF's _fspecial_gauss does (softmax of -(x^2+y^2)/(2 sigma^2)), full 2-D
'valid' correlation, per-scale cs/ssim, TF's SYMMETRIC pad of odd sides before a 2x2 average pool, relu, powers,
product, mean over channels. Where a scale is smaller than the window, the window is cut to the image side (the
documented extension of the C# version; TF would raise).

usage: ms_ssim_reference.py LIST.txt  (each line: PATH_A PATH_B C H W, raw little-endian float32 CHW in [0,1])
prints one MS-SSIM value per line.
"""
import sys
import torch

WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]


def gauss2d(size, sigma):
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = coords ** 2 * (-0.5 / sigma ** 2)
    g = g.reshape(1, -1) + g.reshape(-1, 1)
    return torch.softmax(g.reshape(-1), 0).reshape(size, size)


def ssim_cs(x, y, max_val=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
    c = x.shape[0]
    size = min(size, x.shape[1], x.shape[2])
    w = gauss2d(size, sigma).expand(c, 1, size, size)
    f = lambda t: torch.nn.functional.conv2d(t.unsqueeze(0), w, groups=c)[0]
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    mu_x, mu_y = f(x), f(y)
    sxx = f(x * x) - mu_x ** 2
    syy = f(y * y) - mu_y ** 2
    sxy = f(x * y) - mu_x * mu_y
    lum = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (lum * cs).mean(dim=(1, 2)), cs.mean(dim=(1, 2))


def down(x):
    if x.shape[1] % 2:
        x = torch.cat([x, x[:, -1:, :]], 1)
    if x.shape[2] % 2:
        x = torch.cat([x, x[:, :, -1:]], 2)
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4


def ms_ssim(x, y):
    vals = []
    for k in range(5):
        if k:
            x, y = down(x), down(y)
        s, cs = ssim_cs(x, y)
        vals.append(torch.relu(cs) if k < 4 else torch.relu(s))
    v = torch.ones_like(vals[0])
    for t, p in zip(vals, WEIGHTS):
        v = v * t ** p
    return v.mean().item()


def load(path, c, h, w):
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    return torch.frombuffer(data, dtype=torch.float32).reshape(c, h, w).to(torch.float64)


for line in open(sys.argv[1]):
    if not line.strip():
        continue
    a, b, c, h, w = line.split()
    c, h, w = int(c), int(h), int(w)
    print(repr(ms_ssim(load(a, c, h, w), load(b, c, h, w))))
