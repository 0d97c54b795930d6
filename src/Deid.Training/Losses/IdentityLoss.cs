using Deid.Models;
using static TorchSharp.torch;

namespace Deid.Training.Losses;

/// <summary>
/// L_id = ‖E_id(I_id) − E_id(I_out)‖₁ (§3.3), as the mean absolute difference over the code's elements and the
/// batch (PyTorch's <c>L1Loss</c>). E_id is frozen; the gradient flows through it to I_out.
/// </summary>
public static class IdentityLoss
{
    /// <param name="idCode">E_id of the identity images <c>[B,D]</c> (a constant).</param>
    /// <param name="outputCode">E_id of the generated images <c>[B,D]</c>.</param>
    public static Tensor Compute(Tensor idCode, Tensor outputCode)
    {
        if (!idCode.shape.SequenceEqual(outputCode.shape))
            throw new ArgumentException($"identity codes differ in shape: [{string.Join(",", idCode.shape)}] vs [{string.Join(",", outputCode.shape)}]");
        using var scope = NewDisposeScope();
        return (idCode.detach() - outputCode).abs().mean().MoveToOuterDisposeScope();
    }
}
