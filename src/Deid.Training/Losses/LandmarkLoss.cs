using static TorchSharp.torch;

namespace Deid.Training.Losses;

/// <summary>
/// L_lnd = ‖E_lnd(I_attr) − E_lnd(I_out)‖₂ (§3.3) on the 68-point landmarks without the 17 jaw points (the jaw line
/// follows the identity's face shape, not the expression), as the mean squared coordinate difference (PyTorch's
/// <c>MSELoss</c>) in pixels of the image; λ3 = 0.001 is sized for that.
/// </summary>
public static class LandmarkLoss
{
    /// <summary>Indices 17..67 of the iBUG 68 points: brows, nose, eyes, mouth.</summary>
    public const int FirstNonJawPoint = 17;

    /// <param name="attrLandmarks">E_lnd(I_attr) <c>[B,68,2]</c> (a constant).</param>
    /// <param name="outputLandmarks">E_lnd(I_out) <c>[B,68,2]</c>.</param>
    public static Tensor Compute(Tensor attrLandmarks, Tensor outputLandmarks)
    {
        if (attrLandmarks.dim() != 3 || attrLandmarks.shape[1] != 68 || !attrLandmarks.shape.SequenceEqual(outputLandmarks.shape))
            throw new ArgumentException($"landmarks must both be [B,68,2], got [{string.Join(",", attrLandmarks.shape)}] and [{string.Join(",", outputLandmarks.shape)}]");
        using var scope = NewDisposeScope();
        var a = attrLandmarks.detach().slice(1, FirstNonJawPoint, 68, 1);
        var o = outputLandmarks.slice(1, FirstNonJawPoint, 68, 1);
        return (a - o).square().mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean point distance over the 51 loss points in units of the inter-ocular distance of <paramref name="reference"/>
    /// (outer eye corners 36 and 45), per image <c>[B]</c>: the validation's landmark error.
    /// </summary>
    public static Tensor NormalizedError(Tensor reference, Tensor other)
    {
        using var scope = NewDisposeScope();
        var iod = (reference.select(1, 36) - reference.select(1, 45)).norm(1).clamp_min(1e-6);
        var d = (reference.slice(1, FirstNonJawPoint, 68, 1) - other.slice(1, FirstNonJawPoint, 68, 1)).norm(2).mean(new long[] { 1 });
        return (d / iod).MoveToOuterDisposeScope();
    }
}
