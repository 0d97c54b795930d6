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
        using var mean = torch.tensor(new float[] { 122.782f, 117.001f, 104.298f }, new long[] { 1, 3, 1, 1 }, device: x.device);
        return (x - mean) / 255f;
    }

    /// <summary>
    /// face-api's NetInput: pad the image to a square (centred), then resize bilinearly to size×size.
    /// x is [B,3,H,W] in 0..255; differentiable.
    /// </summary>
    public static Tensor ToSquareInput(Tensor x, int size)
    {
        var h = x.shape[2]; var w = x.shape[3];
        Tensor sq;
        if (h == w) sq = x.alias();
        else
        {
            var diff = Math.Abs(h - w);
            // padToSquare(isCenter=true): Math.round(diff*0.5) appended, the remainder prepended.
            var after = (long)Math.Round(diff * 0.5, MidpointRounding.AwayFromZero);
            var before = diff - after;
            sq = h > w ? nn.functional.pad(x, new long[] { before, after, 0, 0 })
                       : nn.functional.pad(x, new long[] { 0, 0, before, after });
        }
        if (sq.shape[2] == size) return sq;
        using (sq)
            return nn.functional.interpolate(sq, new long[] { size, size }, mode: InterpolationMode.Bilinear, align_corners: false);
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
