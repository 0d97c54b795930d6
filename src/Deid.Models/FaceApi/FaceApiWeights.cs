using Deid.Models.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models.FaceApi;

/// <summary>Loading helpers shared by the face-api.js network ports.</summary>
internal sealed class FaceApiWeights : IDisposable
{
    private readonly Dictionary<string, Tensor> _map;
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private readonly string _manifest;

    private FaceApiWeights(Dictionary<string, Tensor> map, string manifest) { _map = map; _manifest = manifest; }

    public static FaceApiWeights Open(string? modelDir, string manifestName)
    {
        var dir = modelDir ?? ModelStore.FaceApiDir();
        var manifest = Path.Combine(dir, manifestName);
        if (!File.Exists(manifest))
            throw new FileNotFoundException(
                $"face-api.js weights not found: {manifest}; run `deid models fetch` (it unpacks npm @vladmandic/face-api@1.7.15 model/ into the models directory)", manifest);
        return new FaceApiWeights(TfjsManifest.Load(dir, manifestName), manifestName);
    }

    /// <summary>
    /// Builds a network from a manifest strictly (every weight used, see <see cref="EnsureAllUsed"/>), frozen in
    /// eval mode, on <paramref name="device"/> if given.
    /// </summary>
    public static T Build<T>(string? modelDir, string manifestName, Func<FaceApiWeights, T> create, Device? device)
        where T : nn.Module
    {
        using var w = Open(modelDir, manifestName);
        var net = create(w);
        w.EnsureAllUsed();
        net.eval();
        if (device != null) net.to(device);
        return net;
    }

    public Tensor Get(string name, params long[] shape)
    {
        if (!_map.TryGetValue(name, out var t))
            throw new InvalidDataException($"{_manifest}: weight '{name}' is missing");
        if (!t.shape.SequenceEqual(shape))
            throw new InvalidDataException($"{_manifest}: weight '{name}' has shape [{string.Join(",", t.shape)}], expected [{string.Join(",", shape)}]");
        _used.Add(name);
        return t;
    }

    public static TorchSharp.Modules.Parameter Frozen(Tensor t) => new(t.detach().clone(), requires_grad: false);

    /// <summary>A mismatch between manifest and architecture is a porting bug, not something to ignore.</summary>
    public void EnsureAllUsed()
    {
        var unused = _map.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unused.Count > 0)
            throw new InvalidDataException($"{_manifest}: weights not used by the network: {string.Join(", ", unused)}");
    }

    public void Dispose() { foreach (var t in _map.Values) t.Dispose(); }
}

internal static class TfOps
{
    /// <summary>
    /// TF 'SAME' padding: when the total padding is odd TF puts the extra pixel at the bottom/right,
    /// which torch's symmetric padding cannot express, so pad explicitly.
    /// </summary>
    public static Tensor PadSame(Tensor x, long kernel, long stride)
    {
        var h = x.shape[2]; var w = x.shape[3];
        long Total(long n) => Math.Max((((n + stride - 1) / stride) - 1) * stride + kernel - n, 0);
        var th = Total(h); var tw = Total(w);
        if (th == 0 && tw == 0) return x.alias();
        return nn.functional.pad(x, new long[] { tw / 2, tw - tw / 2, th / 2, th - th / 2 });
    }

    public static Tensor Conv(Tensor x, Tensor w, Tensor? b, long stride, bool same, long groups = 1)
    {
        var k = w.shape[2];
        using var padded = same ? PadSame(x, k, stride) : x.alias();
        return nn.functional.conv2d(padded, w, b, strides: new[] { stride, stride }, groups: groups);
    }

    /// <summary>face-api normalisation: subtract the mean RGB and divide by 255 (x is [B,3,H,W] in 0..255).</summary>
    public static Tensor Normalize(Tensor x)
    {
        // In the input's type, so a bf16/fp16 network (mixed-precision training) stays in it.
        using var mean = torch.tensor(new float[] { 122.782f, 117.001f, 104.298f }, new long[] { 1, 3, 1, 1 }, dtype: x.dtype, device: x.device);
        return (x - mean) / 255f;
    }

    /// <summary>
    /// face-api's NetInput in a browser: the image is drawn centred on a transparent size×size canvas
    /// (imageToSquare: offset |w−h|/2 after scaling, fractional) and read back as RGB, so the padding is 0.
    /// x is [B,3,H,W] in 0..255; differentiable (the uint8 rounding of the canvas passes gradients straight through).
    /// </summary>
    /// <remarks>
    /// Reproduces Chromium's software canvas (Skia's legacy bilinear sampler), measured against the pixels
    /// face-api.js 1.7.15 fed its networks for face_rectangular.png (tests/…/FaceApi/Reference): a destination
    /// pixel is drawn only if its centre lies inside the fractional destination rectangle (no edge antialiasing),
    /// samples clamp to the image edge instead of blending with the padding, the bilinear fractions are cut to
    /// 1/16, and the 8-bit result is truncated. That matches 97% (112) / 99% (150) of Chromium's bytes exactly, the
    /// rest off by a few levels where float rounding puts a coordinate on the other side of a 1/16 step. The earlier
    /// torch bilinear on a zero-padded square matched 32% (up to 80 levels off at the image edges, where it blended
    /// in the padding) and moved landmarks by up to 3 px from face-api's; now 0.11 px. Square inputs resized to
    /// 112 (face1/face2) also follow Chromium: 0.07-0.2 px from face-api before, &lt;0.001 px now.
    /// </remarks>
    public static Tensor ToSquareInput(Tensor x, int size)
    {
        var h = x.shape[2]; var w = x.shape[3];
        if (h == size && w == size) return x.alias();
        using var scope = torch.NewDisposeScope();
        var side = Math.Max(h, w);
        var ay = CanvasAxis(h, side, size, x);
        var ax = CanvasAxis(w, side, size, x);
        var o = ay.matmul(x).matmul(ax.t());
        return (o + (o.floor() - o).detach()).MoveToOuterDisposeScope();
    }

    /// <summary>Resampling matrix [size, len] of one axis of imageToSquare's drawImage (see ToSquareInput).</summary>
    private static Tensor CanvasAxis(long len, long side, int size, Tensor like)
    {
        var m = new float[size * len];
        var scale = (double)size / side;
        var start = (side - len) / 2.0 * scale;
        var end = start + len * scale;
        for (var i = 0; i < size; i++)
        {
            var centre = i + 0.5;
            if (centre < start || centre >= end) continue;
            // Skia maps the pixel centre back in 16.16 fixed point and keeps 4 bits of the fraction.
            var u = centre / scale - (side - len) / 2.0 - 0.5;
            var f = (long)Math.Floor(u * 65536);
            var sub = (f >> 12) & 15;
            var i0 = Math.Clamp(f >> 16, 0, len - 1);
            var i1 = Math.Clamp((f >> 16) + 1, 0, len - 1);
            m[i * len + i0] += (16 - sub) / 16f;
            m[i * len + i1] += sub / 16f;
        }
        return torch.tensor(m, new long[] { size, len }, dtype: like.dtype, device: like.device);
    }

    /// <summary>
    /// Bilinear resample of the square region (left, top, size as fractions of the side) of [B,C,S,S] images
    /// to size×size; differentiable, border-replicating outside the image.
    /// </summary>
    public static Tensor CropRegion(Tensor crops, (float Left, float Top, float Size) region, int size)
    {
        using var scope = torch.NewDisposeScope();
        var (l, t, s) = region;
        var b = crops.shape[0];
        // affine_grid maps output [-1,1] to input [-1,1]: scale by the region size, shift to its centre.
        var cx = (l + s / 2) * 2 - 1; var cy = (t + s / 2) * 2 - 1;
        var theta = torch.tensor(new float[] { s, 0, cx, 0, s, cy }, new long[] { 1, 2, 3 }, dtype: crops.dtype, device: crops.device).expand(b, 2, 3);
        var grid = nn.functional.affine_grid(theta, new long[] { b, crops.shape[1], size, size }, align_corners: false);
        return nn.functional.grid_sample(crops, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Border, align_corners: false).MoveToOuterDisposeScope();
    }
}

/// <summary>face-api.js input preparation, public so its parity with the browser can be tested.</summary>
public static class FaceApiInput
{
    /// <summary>What face-api feeds a network of the given input size for images x [B,3,H,W] RGB 0..255 (see TfOps.ToSquareInput).</summary>
    public static Tensor ToSquare(Tensor x, int size) => TfOps.ToSquareInput(x, size);
}
