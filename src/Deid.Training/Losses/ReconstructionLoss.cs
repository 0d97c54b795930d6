using static TorchSharp.torch;

namespace Deid.Training.Losses;

/// <summary>
/// L_rec = α(1 − MS-SSIM(I_attr, I_out)) + (1 − α)‖I_attr − I_out‖₁ (§3.3, after Zhao et al. 2017), α = 0.84; applied
/// only on steps where I_id = I_attr. Both terms on images mapped to [0,1]; the L1 term is the mean absolute
/// difference per pixel and channel.
/// </summary>
public static class ReconstructionLoss
{
    public const double DefaultAlpha = 0.84;

    /// <param name="attr">I_attr <c>[B,3,H,W]</c> in [-1,1] (a constant).</param>
    /// <param name="output">I_out, same shape, ≈[-1,1].</param>
    public static Tensor Compute(Tensor attr, Tensor output, double alpha = DefaultAlpha)
    {
        if (!attr.shape.SequenceEqual(output.shape))
            throw new ArgumentException($"images differ in shape: [{string.Join(",", attr.shape)}] vs [{string.Join(",", output.shape)}]");
        using var scope = NewDisposeScope();
        var a = (attr.detach() + 1) * 0.5;
        var o = (output + 1) * 0.5;
        var msssim = MsSsim.Compute(a, o, 1.0).mean();
        var l1 = (a - o).abs().mean();
        return (alpha * (1 - msssim) + (1 - alpha) * l1).MoveToOuterDisposeScope();
    }
}
