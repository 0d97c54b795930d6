using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Training;

/// <summary>
/// Multi-scale SSIM (Wang, Simoncelli &amp; Bovik 2003), as TensorFlow's <c>tf.image.ssim_multiscale</c> computes it
/// (the paper's own code is TensorFlow): 5 scales with the standard weights, an 11-tap Gaussian window with σ = 1.5
/// ("valid" filtering, no padding), K1 = 0.01, K2 = 0.03; between scales a 2×2 average pool after repeating the last
/// row/column of an odd-sized image (TF's SYMMETRIC pad); cs of scales 1-4 and SSIM of scale 5, each clamped at 0,
/// raised to its weight and multiplied; the mean over colour channels. Differentiable, any device.
/// <para>
/// One extension: where a scale is smaller than the window (images under 176 px reach that at scale 5), the window
/// is cut to the image side (same σ, renormalised) instead of failing as TF does.
/// </para>
/// </summary>
public static class MsSsim
{
    public static readonly double[] Weights = { 0.0448, 0.2856, 0.3001, 0.2363, 0.1333 };
    public const int WindowSize = 11;
    public const double Sigma = 1.5;
    public const double K1 = 0.01;
    public const double K2 = 0.03;

    /// <summary>MS-SSIM per image <c>[B]</c> of two batches <c>[B,C,H,W]</c> with values in [0, <paramref name="maxVal"/>].</summary>
    public static Tensor Compute(Tensor a, Tensor b, double maxVal = 1.0)
    {
        if (a.dim() != 4 || !a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"MS-SSIM needs two batches [B,C,H,W] of one shape, got [{string.Join(",", a.shape)}] and [{string.Join(",", b.shape)}]");
        using var scope = NewDisposeScope();
        var x = a.to_type(ScalarType.Float32);
        var y = b.to_type(ScalarType.Float32);
        var factors = new List<Tensor>();
        for (int k = 0; k < Weights.Length; k++)
        {
            if (k > 0) { x = Downsample(x); y = Downsample(y); }
            var (ssim, cs) = SsimPerChannel(x, y, maxVal);
            factors.Add(k < Weights.Length - 1 ? cs : ssim);
        }
        var stacked = stack(factors, -1);                                   // [B,C,5]
        using var w = tensor(Weights.Select(v => (float)v).ToArray(), device: stacked.device);
        // relu(v)^w with a gradient that stays finite where v <= 0 (the factor is then exactly 0, as in TF).
        var positive = stacked.gt(0);
        var powered = where(positive, stacked.clamp_min(1e-12).pow(w), zeros_like(stacked));
        return powered.prod(-1).mean(new long[] { 1 }).MoveToOuterDisposeScope();
    }

    /// <summary>MS-SSIM per image of two batches in the networks' [-1,1] range (mapped to [0,1] first).</summary>
    public static Tensor FromMinusOneToOne(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return Compute((a + 1) * 0.5, (b + 1) * 0.5, 1.0).MoveToOuterDisposeScope();
    }

    /// <summary>(SSIM, cs) per image and channel <c>[B,C]</c> at one scale.</summary>
    internal static (Tensor Ssim, Tensor Cs) SsimPerChannel(Tensor x, Tensor y, double maxVal)
    {
        using var scope = NewDisposeScope();
        long c = x.shape[1];
        int size = (int)Math.Min(WindowSize, Math.Min(x.shape[2], x.shape[3]));
        var g = Gaussian1D(size, Sigma, x.device);
        var gh = g.view(1, 1, 1, size).expand(c, 1, 1, size);
        var gv = g.view(1, 1, size, 1).expand(c, 1, size, 1);
        Tensor Filter(Tensor t) => F.conv2d(F.conv2d(t, gh, groups: c), gv, groups: c);
        double c1 = Math.Pow(K1 * maxVal, 2), c2 = Math.Pow(K2 * maxVal, 2);
        var mx = Filter(x);
        var my = Filter(y);
        var mxy2 = mx * my * 2;
        var mm = mx.square() + my.square();
        var luminance = (mxy2 + c1) / (mm + c1);
        var cov2 = Filter(x * y) * 2;
        var var2 = Filter(x.square() + y.square());
        var cs = (cov2 - mxy2 + c2) / (var2 - mm + c2);
        var ssim = (luminance * cs).mean(new long[] { 2, 3 });
        return (ssim.MoveToOuterDisposeScope(), cs.mean(new long[] { 2, 3 }).MoveToOuterDisposeScope());
    }

    private static Tensor Gaussian1D(int size, double sigma, Device device)
    {
        var v = new float[size];
        double sum = 0;
        for (int i = 0; i < size; i++)
        {
            double d = i - (size - 1) / 2.0;
            sum += v[i] = (float)Math.Exp(-d * d / (2 * sigma * sigma));
        }
        for (int i = 0; i < size; i++) v[i] = (float)(v[i] / sum);
        return tensor(v, device: device);
    }

    /// <summary>2×2 average pool; an odd side first gets its last row/column repeated (TF's SYMMETRIC pad of 1).</summary>
    private static Tensor Downsample(Tensor x)
    {
        using var scope = NewDisposeScope();
        long padH = x.shape[2] % 2, padW = x.shape[3] % 2;
        if (padH != 0 || padW != 0) x = F.pad(x, new long[] { 0, padW, 0, padH }, TorchSharp.PaddingModes.Replicate);
        return F.avg_pool2d(x, 2, 2).MoveToOuterDisposeScope();
    }
}
